"""deploy.lab.s3 (the lab's object store, moto) builders and ensure with a fake runner; the lab env's S3 keys
load as app settings and app secrets."""

import pytest
from invoke import Result

from deploy.core.errors import ToolkitError
from deploy.lab import deploy_env, s3
from deploy.ship import config

SPEC = s3.S3Spec(prefix="t", labels=(("djdeploy.test", "x"),), port=0)


def test_builders_are_exact():
    assert s3.network_create_argv(SPEC) == ["docker", "network", "create", "--driver", "bridge", "--label",
                                            "djdeploy.test=x", "t-s3"]
    assert s3.run_argv(SPEC) == [
        "docker", "run", "--detach", "--name", "t-s3", "--network", "t-s3", "--network-alias", "s3", "--label",
        "djdeploy.test=x", "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,mode=1777", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges:true", "--memory", "512m", "--pids-limit", "256", "--restart",
        "unless-stopped", "--publish", "127.0.0.1::5000", "djdeploy-lab/moto-s3:5.1"]
    assert s3.connect_argv(SPEC, "shop_backend") == ["docker", "network", "connect", "--alias", "s3", "shop_backend",
                                                     "t-s3"]
    assert s3.disconnect_argv(SPEC, "n") == ["docker", "network", "disconnect", "--force", "n", "t-s3"]
    assert s3.endpoint_url() == "http://s3:5000" and s3.endpoint_url("127.0.0.1", 32000) == "http://127.0.0.1:32000"


def test_the_stand_in_recipe_names_the_image_honestly():
    from deploy.lab import standins

    names = {item.name: item.directory.name for item in standins.stand_ins()}
    assert names[s3.IMAGE] == "s3"


def test_bad_spec_is_refused_before_anything_runs():
    class Never:
        def run(self, *a, **k):
            pytest.fail("nothing may run")
    with pytest.raises(ToolkitError) as err:
        s3.ensure(Never(), s3.S3Spec(prefix="bad name", port=70000))
    assert str(err.value) == ("lab object store: port: 70000 is not a TCP port (1-65535, or 0); "
                              "prefix: 'bad name' must be letters, digits, '-' or '_'")


class FakeRunner:
    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def run(self, argv, **kw):
        self.calls.append(argv)
        for needle, result in self.answers:
            if needle in " ".join(argv):
                return result
        return Result(stdout="")


def test_ensure_starts_what_is_missing_then_makes_the_bucket(monkeypatch):
    made = []
    monkeypatch.setattr(s3, "_answers", lambda port: True)
    monkeypatch.setattr(s3, "make_bucket", lambda port, bucket: made.append((port, bucket)))
    runner = FakeRunner([("network inspect", Result(exited=1)), ("container inspect", Result(exited=1)),
                         ("docker port", Result(stdout="127.0.0.1:32001\n"))])
    record = s3.ensure(runner, SPEC, bucket="media", say=lambda m: None)
    assert s3.network_create_argv(SPEC) in runner.calls and s3.run_argv(SPEC) in runner.calls
    assert made == [(32001, "media")]
    assert record == {"network": "t-s3", "containers": ["t-s3"], "endpoint": "http://127.0.0.1:32001",
                      "internal_endpoint": "http://s3:5000", "bucket": "media"}


def test_a_running_store_is_kept(monkeypatch):
    monkeypatch.setattr(s3, "_answers", lambda port: True)
    monkeypatch.setattr(s3, "make_bucket", lambda port, bucket: None)
    runner = FakeRunner([("container inspect", Result(stdout="true\n")), ("docker port", Result(stdout="0.0.0.0:1\n"))])
    s3.ensure(runner, SPEC, say=lambda m: None)
    assert not [c for c in runner.calls if c[:2] in (["docker", "run"], ["docker", "start"])]


def test_lab_env_s3_keys_load_as_app_settings_and_secrets(tmp_path, monkeypatch):
    monkeypatch.setattr(deploy_env, "SECRETS_DIR", tmp_path / "secrets")
    keys = deploy_env.s3_keys("media")
    (tmp_path / "id").write_text("k")
    (tmp_path / "kh").write_text("x")
    text = deploy_env.lab_env_text(stack="djs3", extra=keys).replace(
        str(deploy_env.paths.SSH_KEY), str(tmp_path / "id")).replace(str(deploy_env.paths.KNOWN_HOSTS), str(tmp_path / "kh"))
    text = text.replace(f"REGISTRY_PASSWORD_FILE={deploy_env.paths.REGISTRY_PASSWORD_FILE}", "REGISTRY_PASSWORD=pw")
    (tmp_path / "lab.env").write_text(text)
    cfg = config.load("lab", env_dir=tmp_path, environ={})
    assert dict(cfg.app_env) == {"AWS_STORAGE_BUCKET_NAME": "media", "AWS_S3_ENDPOINT_URL": "http://s3:5000",
                                 "AWS_S3_REGION_NAME": "us-east-1", "AWS_S3_ADDRESSING_STYLE": "path"}
    secrets = dict(cfg.app_secrets)
    assert set(secrets) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all(len(v) > 40 for v in secrets.values()) and (tmp_path / "secrets" / "s3_access_key_id").stat().st_mode & 0o077 == 0
