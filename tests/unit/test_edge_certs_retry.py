"""The certificate wait of a deploy (deploy.ship.edge_steps.wait_certs) when the certs service's last attempts
failed: a redeploy after the cause is fixed (DNS, the CA) must not fail on those stale failures. The deploy asks the
certs service to retry now (`edge-agent retry`) and decides on an attempt made after that. Also the retry command."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import urllib.error

import pytest
from invoke import Context, Result

from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner
from deploy.ship import edge_stack, edge_steps
from test_edge_stack import cfg, status


class Manager(Context):
    """Answers the status command from ``statuses`` (one per poll, the last one repeated); records every command."""

    def __init__(self, statuses):
        super().__init__()
        self.statuses, self.calls = list(statuses), []

    def run(self, command, **kw):
        self.calls.append(command)
        if "certs-retry" in command:
            return Result(stdout="retrying now\n")
        answer = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return Result(stdout=json.dumps(answer) + "\n")


def run_wait(statuses, monkeypatch):
    monkeypatch.setattr(edge_steps, "POLL", 0)
    ctx, out = Manager(statuses), io.StringIO()
    job = SimpleNamespace(cfg=cfg(), manager=Runner(ctx=ctx, where="root@manager", echo=False), out=out)
    try:
        return edge_steps.wait_certs(job, None), out.getvalue(), ctx.calls
    except ToolkitError as exc:
        return exc, out.getvalue(), ctx.calls


FAILED = {"error": "urn:ietf:params:acme:error:connection: refused", "failures": 2, "attempts": 2}


def test_stale_failures_ask_for_a_retry_and_a_valid_certificate_after_it_passes(monkeypatch):
    c = cfg()
    result, out, calls = run_wait([status(c, **FAILED), status(c, **FAILED), status(c, valid=True, attempts=3)],
                                  monkeypatch)
    assert result == "3 polls; serving certificate serial ab (shop.example.com,www.example.com)"
    assert out == ("  shop_certs: its earlier attempts failed (urn:ietf:params:acme:error:connection: refused); "
                   "asking it to retry now\n"
                   "  shop_certs: serving certificate serial ab (shop.example.com,www.example.com)\n")
    assert sum("certs-retry" in call for call in calls) == 1


def test_a_failed_attempt_after_the_retry_fails_the_deploy_with_the_cas_reason(monkeypatch):
    c = cfg()
    again = dict(FAILED, attempts=3, failures=3, error="urn:ietf:params:acme:error:connection: still refused")
    result, _, calls = run_wait([status(c, **FAILED), status(c, **FAILED), status(c, **again)], monkeypatch)
    assert isinstance(result, ToolkitError)
    assert str(result) == (
        "no valid certificate for shop.example.com,www.example.com from https://ca.example/dir: "
        "urn:ietf:params:acme:error:connection: still refused; nothing was rolled out: prod keeps serving the previous "
        "version (and its certificate); see `docker service logs shop_certs`")
    assert sum("certs-retry" in call for call in calls) == 1   # asked once, never again


def test_the_retry_command_is_the_status_command_with_retry(monkeypatch):
    status_cmd, retry_cmd = edge_stack.certs_status_cmd(cfg()), edge_stack.certs_retry_cmd(cfg())
    assert retry_cmd == ["sh", "-c", status_cmd[2].replace("edge-agent status", "edge-agent retry"), "certs-retry",
                         "shop_certs"]


def test_the_certs_service_retries_at_once_when_asked_on_loopback(tmp_path, monkeypatch):
    """The agent itself (deploy/ship/edge/edge_certs.py, run here): an order that fails waits out a 300 s backoff,
    unless `edge-agent retry` POSTs /retry on 127.0.0.1; other paths are refused."""
    import socket
    import sys
    import threading
    import time
    import urllib.request
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "ship" / "edge"))
    import edge_certs

    def refused(certs, args):
        raise ConnectionRefusedError("the CA is down")

    monkeypatch.setattr(edge_certs, "order", refused)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = SimpleNamespace(state=str(tmp_path), names="djlab.test", directory="https://ca/dir", mode="acme",
                           config_id="cfg1", port=port, retry_min=300.0, retry_max=300.0)
    threading.Thread(target=edge_certs.run_certs, args=(args,), daemon=True).start()

    def attempts(n):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if json.loads((tmp_path / "status.json").read_text()).get("attempts") == n:
                    return True
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        return False

    assert attempts(1)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(urllib.request.Request(f"http://127.0.0.1:{port}/status", data=b"", method="POST"), timeout=5)
    assert err.value.code == 404
    with opener.open(urllib.request.Request(f"http://127.0.0.1:{port}/retry", data=b"", method="POST"),
                     timeout=5) as resp:
        assert (resp.status, resp.read()) == (202, b"retrying now\n")
    assert attempts(2)   # long before the 300 s backoff
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["failures"], status["error"]) == (2, "ConnectionRefusedError: the CA is down")
