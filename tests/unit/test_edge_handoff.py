"""edge-agent prepare with a predecessor (relay mode): the running proxy's server state is read through the handoff
socket, and the certificate is awaited instead of starting with a placeholder (deploy/ship/edge/edge_sync.py)."""

import socket
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "ship" / "edge"))

import edge_sync  # noqa: E402

STATE = "1\n# be_id be_name srv_id srv_name srv_addr\n3 app 1 app1 10.0.1.7\n"


def serve_once(path: str, reply: bytes, received: list) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        received.append(conn.recv(65536).decode())
        conn.sendall(reply)
        conn.close()
        server.close()

    thread = threading.Thread(target=answer)
    thread.start()
    return thread


def args(tmp_path, **over):
    base = dict(handoff=str(tmp_path / "handoff.sock"), state_file=str(tmp_path / "server-state"),
                cert=str(tmp_path / "edge" / "site.pem"), source="http://certs/bundle", config_from="", wait=3)
    return SimpleNamespace(**{**base, **over})


def test_the_predecessors_server_state_is_saved_for_the_new_proxy(tmp_path):
    received = []
    thread = serve_once(str(tmp_path / "handoff.sock"), STATE.encode(), received)
    assert edge_sync.predecessor_state(args(tmp_path)) == STATE
    thread.join(5)
    assert received == ["show servers state\n"]
    assert (tmp_path / "server-state").read_text() == STATE


def test_no_handoff_socket_or_a_dead_one_means_no_predecessor(tmp_path):
    assert edge_sync.predecessor_state(args(tmp_path, handoff="")) is None
    assert edge_sync.predecessor_state(args(tmp_path)) is None            # no file
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(tmp_path / "handoff.sock"))
    dead.close()                                                          # a file nobody listens on
    assert edge_sync.predecessor_state(args(tmp_path)) is None
    assert not (tmp_path / "server-state").exists()


def test_with_a_predecessor_the_certificate_is_awaited_not_replaced_by_a_placeholder(tmp_path, monkeypatch):
    answers = [OSError("certs restarting"), OSError("certs restarting"), ("CERT+KEY\n", '"e1"')]
    monkeypatch.setattr(edge_sync, "fetch", lambda url, timeout=2: (
        (_ for _ in ()).throw(answers.pop(0)) if isinstance(answers[0], Exception) else answers.pop(0)))
    monkeypatch.setattr(edge_sync, "cert_info", lambda b: {"serial": "ab12"})
    monkeypatch.setattr(edge_sync.time, "sleep", lambda s: None)
    (tmp_path / "edge").mkdir()
    edge_sync.prepare_cert(args(tmp_path), wait=60)
    assert (tmp_path / "edge" / "site.pem").read_text() == "CERT+KEY\n" and answers == []


def test_without_a_predecessor_the_first_failure_starts_the_placeholder(tmp_path, monkeypatch, capsys):
    calls = []

    def fetch(url, timeout=2):
        calls.append(url)
        raise OSError("no certificate yet")

    monkeypatch.setattr(edge_sync, "fetch", fetch)
    monkeypatch.setattr(edge_sync, "placeholder", lambda: "PLACEHOLDER\n")
    (tmp_path / "edge").mkdir()
    edge_sync.prepare_cert(args(tmp_path), wait=0)
    assert calls == ["http://certs/bundle"] and (tmp_path / "edge" / "site.pem").read_text() == "PLACEHOLDER\n"
    assert "starting with a placeholder" in capsys.readouterr().out + capsys.readouterr().err


def test_the_sync_program_leaves_with_status_0_on_the_masters_sigusr1(monkeypatch):
    """Dying of SIGUSR1 (Python's default) made the master SIGTERM the worker at a soft stop (exit-on-failure)."""
    installed = {}
    monkeypatch.setattr(edge_sync.signal, "signal", lambda sig, fn: installed.setdefault(sig, fn))
    monkeypatch.setattr(edge_sync, "sync_once", lambda args, seen: (_ for _ in ()).throw(SystemExit(0)))
    try:
        edge_sync.run_sync(SimpleNamespace(config_from="", config="/nonexistent", interval=1))
    except SystemExit:
        pass
    handler = installed[edge_sync.signal.SIGUSR1]
    try:
        handler(edge_sync.signal.SIGUSR1, None)
    except SystemExit as exc:
        assert exc.code == 0
    else:
        raise AssertionError("the handler did not exit")
