"""The ship tasks through `inv`: validation happens before any side effect and errors are one line."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEY = "Q" * 30 + "abcdefghijklmnopqrstuvwxyz"


def inv(tmp_path, *args):
    env = dict(os.environ, DJDEPLOY_ENV_DIR=str(tmp_path))
    env = {k: v for k, v in env.items() if not k.startswith("DJDEPLOY_") or k == "DJDEPLOY_ENV_DIR"}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_unknown_env_lists_valid_ones_and_touches_nothing(tmp_path):
    (tmp_path / "staging.env").write_text("")
    (tmp_path / "prod.env").write_text("")
    for task in ("deploy", "push", "rollback", "status", "audit", "unlock"):
        result = inv(tmp_path, task, "--env", "qa")
        assert result.returncode == 1, task
        assert result.stderr == (f"error: invalid configuration:\n  - unknown environment 'qa'; valid environments: "
                                 f"prod, staging (each is a file {tmp_path}/<env>.env; start from "
                                 f"{tmp_path}/prod.env.example)\n"), task
        assert "Traceback" not in result.stderr


def test_every_problem_listed_at_once_before_any_connection(tmp_path):
    # the manager and the registry are closed ports: if anything tried to connect, the error would differ
    (tmp_path / "prod.env").write_text("MANAGER_HOST=127.0.0.1\nSSH_PORT=1\nREGISTRY=127.0.0.1:1\nREPLICAS=x\n")
    result = inv(tmp_path, "deploy", "--env", "prod")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: invalid configuration in {tmp_path}/prod.env:"
    assert f"  - {tmp_path}/prod.env: STACK_NAME is required" in lines
    assert f"  - {tmp_path}/prod.env:4: REPLICAS must be a whole number from 1 to 100 (got 'x')" in lines
    assert f"  - {tmp_path}/prod.env: DJANGO_SECRET_KEY is required" in lines
    assert "refused" not in result.stderr and "not reachable" not in result.stderr


def write_prod(tmp_path):
    (tmp_path / "id").write_text("k")
    (tmp_path / "kh").write_text("")
    (tmp_path / "prod.env").write_text(
        f"MANAGER_HOST=127.0.0.1\nSSH_PORT=1\nSSH_KEY={tmp_path}/id\nKNOWN_HOSTS={tmp_path}/kh\nREGISTRY=127.0.0.1:1\n"
        f"REGISTRY_USER=u\nREGISTRY_PASSWORD=hunter2hunter2\nSTACK_NAME=shop\nDJANGO_SECRET_KEY={KEY}\n"
        "POSTGRES_PASSWORD=pgsecretpg\nDJANGO_ALLOWED_HOSTS=shop.example.com\n")


def test_dry_run_reads_the_registry_first_and_fails_in_one_line_without_secrets(tmp_path):
    write_prod(tmp_path)
    result = inv(tmp_path, "deploy", "--env", "prod", "--image", "abc1234", "--dry-run")
    assert result.returncode == 1
    assert result.stderr.startswith("error: registry 127.0.0.1:1 is not reachable (")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    for secret in ("hunter2hunter2", "pgsecretpg", KEY):
        assert secret not in result.stdout + result.stderr


def test_task_flags_reach_the_flag_layer(tmp_path, monkeypatch):
    from invoke import MockContext

    from deploy.ship import executor
    from deploy.tasks import ship

    write_prod(tmp_path)
    monkeypatch.setattr("deploy.ship.config.DEPLOY_DIR", tmp_path)
    seen = []
    monkeypatch.setattr(executor, "deploy", lambda cfg, **kw: seen.append((cfg.replicas, cfg.allow_dirty, kw)))
    monkeypatch.setattr(executor, "rollback", lambda cfg, **kw: seen.append((cfg.replicas, cfg.allow_dirty, kw)))
    monkeypatch.setattr(ship, "_config", lambda env, **flags: __import__("deploy.ship.config", fromlist=["x"]).load(
        env, env_dir=tmp_path, environ={"DJDEPLOY_REPLICAS": "4"}, flags=flags))
    ship.deploy(MockContext(), "prod", replicas=7, allow_dirty=True)
    ship.deploy(MockContext(), "prod", image="abc", dry_run=True)
    ship.rollback(MockContext(), "prod", to="abc", allow_dirty=True)
    assert seen == [(7, True, {"tag": None, "build": True, "dry_run": False}),
                    (4, False, {"tag": "abc", "build": False, "dry_run": True}),
                    (4, True, {"to": "abc", "dry_run": False})]


def test_help_lists_the_new_flags(tmp_path):
    deploy_help = inv(tmp_path, "--help", "deploy").stdout
    for flag in ("--replicas", "--allow-dirty", "--dry-run", "--image"):
        assert flag in deploy_help
    assert "--last" in inv(tmp_path, "--help", "audit").stdout
