"""A Swarm 'update out of sequence' refusal is transient: the step runs its (idempotent) command again."""

from types import SimpleNamespace

import pytest

from deploy.core.errors import CommandFailed
from deploy.core.runner import Outcome
from deploy.ship import actions


class Runner:
    def __init__(self, answers):
        self.answers, self.calls = list(answers), 0

    def run(self, argv, **kw):
        self.calls += 1
        return self.answers.pop(0)


def job(runner):
    return SimpleNamespace(runner=lambda where: runner, cfg=SimpleNamespace(command_timeout=5, env="lab"))


STEP = SimpleNamespace(where="manager", argv=["docker", "stack", "deploy"], stdin=None, hide=True, ok_output="", fail="")
REFUSED = Outcome("docker stack deploy", 1, "", "failed to update service s_certs: rpc error: update out of sequence")


def test_out_of_sequence_is_run_again_until_it_passes(monkeypatch):
    monkeypatch.setattr(actions.time, "sleep", lambda s: None)
    runner = Runner([REFUSED, REFUSED, Outcome("docker stack deploy", 0)])
    assert actions.run_step(job(runner), STEP) == "ran again 2x (update out of sequence)" and runner.calls == 3


def test_out_of_sequence_gives_up_after_the_retries_and_other_failures_are_not_retried(monkeypatch):
    monkeypatch.setattr(actions.time, "sleep", lambda s: None)
    runner = Runner([REFUSED] * (actions.RETRIES + 1))
    with pytest.raises(CommandFailed):
        actions.run_step(job(runner), STEP)
    assert runner.calls == actions.RETRIES + 1
    other = Runner([Outcome("docker stack deploy", 1, "", "no such image")])
    with pytest.raises(CommandFailed):
        actions.run_step(job(other), STEP)
    assert other.calls == 1
