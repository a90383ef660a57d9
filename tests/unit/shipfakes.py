"""Fakes shared by the ship unit tests: an env file, a Fabric-Connection stand-in for the manager that keeps a
little Swarm state (services appear on `stack deploy`, secrets on `secret create`), and an offline registry."""

from __future__ import annotations

import io

import pytest
from invoke import Result

from deploy.core.runner import Runner
from deploy.ship.config import load

KEY = "K" * 30 + "abcdefghijklmnopqrstuvwxyz"
DIGEST = "sha256:" + "f" * 64


def write_env(tmp_path, extra: str = "") -> None:
    (tmp_path / "id").write_text("k")
    (tmp_path / "kh").write_text("x")
    (tmp_path / "lab.env").write_text(
        f"MANAGER_HOST=127.0.0.1\nSSH_PORT=2222\nSSH_KEY={tmp_path}/id\nKNOWN_HOSTS={tmp_path}/kh\n"
        "REGISTRY=127.0.0.1:5000\nREGISTRY_USER=lab\nREGISTRY_PASSWORD=regsecret\nSTACK_NAME=djt\n"
        f"DJANGO_SECRET_KEY={KEY}\nPOSTGRES_PASSWORD=pgsecret\nDJANGO_ALLOWED_HOSTS=127.0.0.1\nPUBLISHED_PORT=18080\n"
        "PUBLISH_MODE=host\nENDPOINT_MODE=dnsrr\nTLS_MODE=external\nTRUSTED_LB=192.0.2.1\n" + extra)


def make_cfg(tmp_path, extra: str = ""):
    write_env(tmp_path, extra)
    return load("lab", env_dir=tmp_path, environ={})


def config_problems(tmp_path, extra: str) -> list:
    """The problem lines of the ConfigError that loading lab.env with ``extra`` raises."""
    from deploy.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        make_cfg(tmp_path, extra)
    return [line.strip().removeprefix("- ") for line in str(err.value).splitlines()]


def env_line(tmp_path, key: str) -> str:
    """``<tmp>/lab.env:<line>`` of ``key``, as a ConfigError names it."""
    lines = (tmp_path / "lab.env").read_text().splitlines()
    return f"{tmp_path / 'lab.env'}:{1 + next(i for i, line in enumerate(lines) if line.startswith(key + '='))}"


class FakeSftp:
    def __init__(self, files):
        self.files = files

    def open(self, path, mode):
        sftp = self

        class F(io.BytesIO):
            def chmod(self, m):
                pass

            def close(self):
                sftp.files[path] = self.getvalue()
                super().close()

            def __exit__(self, *a):
                self.close()
        return F()

    def chmod(self, path, mode):
        pass


# A migration check that finds one pending migration, and the pre-migrate backup it then takes (the migrate
# step runs only when migrations are pending).
PENDING_RULES = [("role=migration-check", Result(stdout='DJDEPLOY-MIGRATIONS {"pending": ["notes.0002_x"], "unsafe": []}\n')),
                 ("djdeploy.role=backup", lambda cmd: Result(stdout=f"backup {cmd.split()[-4]} 4096 {'d' * 64}\n"))]


class FakeManager:
    """Answers by the first matching rule, else like a small Swarm: the app service exists once a stack file
    naming it was deployed (``app`` True: from the start), its update completes at once; secrets exist once
    created. Records (command, stdin)."""

    def __init__(self, rules=(), app=False, secrets=()):
        self.rules = list(rules)
        self.calls, self.files, self.closed = [], {}, False
        self.app_updates = 1 if app else 0
        self.secrets = set(secrets)

    def run(self, command, **kw):
        stream = kw.get("in_stream")
        stdin = stream.read() if stream else None
        self.calls.append((command, stdin))
        for needle, answer in self.rules:
            if needle in command:
                return answer(command) if callable(answer) else answer
        return self.swarm(command)

    def swarm(self, command):
        if "proxies-status" in command:   # every proxy runs the configuration the deploy put
            return Result(stdout=f"1\n{proxies_status(self.files)}\n")
        if "stack.yml djt" in command:
            self.app_updates += 1
        if "secret create" in command:
            self.secrets.add(command.split()[-2])
        if "UpdateStatus.State" in command:
            if not self.app_updates:
                return Result(exited=1, stderr="Error: no such service: djt_app\n")
            return Result(stdout=f"completed T{self.app_updates}\n")
        if "secret ls" in command:
            return Result(stdout="".join(f"{name}\n" for name in sorted(self.secrets)))
        if "desired-state=running" in command:
            return Result(stdout="Running 1 second ago|i|\n" * 9)
        if "djdeploy.role=migration-check" in command:  # deploy.ops.migration_check: nothing pending
            return Result(stdout='DJDEPLOY-MIGRATIONS {"pending": [], "unsafe": []}\n')
        if "djdeploy.role=rollback-check" in command:  # deploy.ops.rollback_check: the target knows them all
            return Result(stdout="DJDEPLOY-UNKNOWN \n")
        return Result(stdout="")

    def sftp(self):
        return FakeSftp(self.files)

    def close(self):
        self.closed = True

    def commands(self):
        return [c for c, _ in self.calls]

    def stdin_of(self, needle):
        return [s for c, s in self.calls if needle in c]


def proxies_status(files) -> str:
    """The certs service's status once the one proxy runs the haproxy.cfg that was put (deploy.ship.edge_steps)."""
    import hashlib
    import json

    text = next((v for k, v in files.items() if k.endswith("/haproxy.cfg")), b"")
    want = hashlib.sha256(text).hexdigest()[:16]
    return json.dumps({"proxy_config": want, "proxies": {"proxy-1": {"config": want, "age": 0.5}}})


def remote(cfg, manager, out=None):
    return Runner(ctx=manager, where="root@127.0.0.1", secrets=tuple(cfg.secrets), out=out or io.StringIO())


class FakeRegistry:
    """The registry as the executor sees it: tags with digests; a push adds one."""

    def __init__(self, monkeypatch, tags=None):
        from deploy.ship import registry

        self.tags = dict(tags or {})
        self.pushed = []
        monkeypatch.setattr(registry, "check", lambda cfg: None)
        monkeypatch.setattr(registry, "manifest_digest", lambda cfg, tag: self.tags.get(tag))
        monkeypatch.setattr(registry, "push", self.push)
        from deploy.image import bridge   # static bridging (tests/unit/test_bridge.py) needs an engine

        self.bridged = []
        monkeypatch.setattr(bridge, "apply", lambda cfg, manager, ref, tag, out=None, base="": self.bridged.append(ref) or "")

    def push(self, cfg, local_ref, tag, out=None):
        self.pushed.append((local_ref, tag))
        self.tags[tag] = DIGEST
        return DIGEST


class Built:
    def __init__(self, ref):
        self.ref = ref


def builder(calls):
    def build(tag):
        calls.append(tag)
        return Built(f"djapp:{tag}")
    return build


@pytest.fixture
def offline(monkeypatch):
    """No HTTP, no sleeping, a fixed git tag: the local side answers as a healthy lab would."""
    from deploy.ship import edge_image, executor, wait

    monkeypatch.setattr(edge_image, "ensure", lambda cfg, out=None: edge_image.ref(cfg))   # built and pushed
    monkeypatch.setattr(wait, "probe", lambda url, host: (200, "v2"))
    monkeypatch.setattr(wait, "POLL", 0)
    monkeypatch.setattr(wait, "HEALTH_POLL", 0)
    monkeypatch.setattr(executor, "git_tag", lambda: "abc1234")
