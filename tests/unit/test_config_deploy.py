"""deploy.ship.config: every error verbatim, precedence, secrets from files, nothing printed."""

import dataclasses
from pathlib import Path

import pytest

from deploy.ship import config
from deploy.core.errors import ConfigError

KEY = "k" * 20 + "abcdefghij" * 3 + "XYZ"  # 53 chars, many distinct


def write(tmp_path, name="prod", text=None, **over):
    (tmp_path / "id").write_text("key")
    (tmp_path / "kh").write_text("[h]:22 ssh-ed25519 AAAA\n")
    values = {"MANAGER_HOST": "manager.example.com", "STACK_NAME": "shop", "REGISTRY": "registry.example.com",
              "REGISTRY_USER": "ci", "REGISTRY_PASSWORD": "regpass", "DJANGO_SECRET_KEY": KEY,
              "POSTGRES_PASSWORD": "pgpass", "DJANGO_ALLOWED_HOSTS": "shop.example.com, www.example.com",
              "SSH_KEY": str(tmp_path / "id"), "KNOWN_HOSTS": str(tmp_path / "kh")}
    values.update(over)
    body = text if text is not None else "".join(f"{k}={v}\n" for k, v in values.items() if v is not None)
    path = tmp_path / f"{name}.env"
    path.write_text(body)
    return path


def problems(tmp_path, env="prod", **kw):
    with pytest.raises(ConfigError) as err:
        config.load(env, env_dir=tmp_path, environ=kw.pop("environ", {}), **kw)
    return err.value.problems


def test_valid_file_loads_with_defaults(tmp_path):
    write(tmp_path)
    cfg = config.load("prod", env_dir=tmp_path, environ={})
    assert (cfg.manager_host, cfg.ssh_user, cfg.ssh_port, cfg.replicas, cfg.published_port) == (
        "manager.example.com", "root", 22, 2, 80)
    assert (cfg.publish_mode, cfg.endpoint_mode, cfg.proxy) == ("ingress", "vip", True)
    assert cfg.django_allowed_hosts == "shop.example.com,www.example.com"
    assert cfg.health_host == "shop.example.com"
    assert cfg.health_url == "https://manager.example.com:443/health/?ready=1"  # TLS_MODE=acme by default
    assert (cfg.tls_mode, cfg.tls, cfg.https_port, cfg.hsts_max_age) == ("acme", True, 443, 3600)
    assert cfg.remote_dir == "/var/lib/djdeploy/shop"
    assert cfg.image_ref("abc1234") == "registry.example.com/djapp:abc1234"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.replicas = 3


def test_repr_never_shows_secrets(tmp_path):
    write(tmp_path)
    cfg = config.load("prod", env_dir=tmp_path, environ={})
    text = repr(cfg) + str(cfg)
    assert "regpass" not in text and "pgpass" not in text and KEY not in text
    assert set(cfg.secrets) == {"regpass", "pgpass", KEY}


def test_unknown_env_lists_valid_ones(tmp_path):
    write(tmp_path, "prod")
    write(tmp_path, "staging")
    (tmp_path / "prod.env.example").write_text("")
    assert problems(tmp_path, env="qa") == [
        f"unknown environment 'qa'; valid environments: prod, staging "
        f"(each is a file {tmp_path}/<env>.env; start from {tmp_path}/prod.env.example)"]


def test_unknown_env_when_none_exist(tmp_path):
    assert problems(tmp_path, env="prod") == [
        f"unknown environment 'prod'; valid environments: none yet "
        f"(each is a file {tmp_path}/<env>.env; start from {tmp_path}/prod.env.example)"]


def test_every_missing_key_reported_at_once(tmp_path):
    path = write(tmp_path, text="SSH_PORT=22\nKNOWN_HOSTS=/nonexistent/kh\n")
    assert problems(tmp_path, environ={"DJDEPLOY_SSH_KEY": "/nonexistent/id"}) == [
        f"{path}: MANAGER_HOST is required",
        f"{path}: STACK_NAME is required",
        f"{path}: REGISTRY is required",
        f"{path}: REGISTRY_USER is required",
        f"{path}: DJANGO_ALLOWED_HOSTS is required",
        f"{path}: REGISTRY_PASSWORD is required",
        f"{path}: DJANGO_SECRET_KEY is required",
        f"{path}: POSTGRES_PASSWORD is required",
        "environment DJDEPLOY_SSH_KEY: SSH_KEY file /nonexistent/id does not exist",
        f"{path}:2: KNOWN_HOSTS file /nonexistent/kh does not exist",
    ]


def test_missing_required_keys_exact(tmp_path):
    path = write(tmp_path, MANAGER_HOST=None, REGISTRY_PASSWORD=None, STACK_NAME="")
    assert problems(tmp_path) == [
        f"{path}: MANAGER_HOST is required",
        f"{path}:1: STACK_NAME is empty",
        f"{path}: REGISTRY_PASSWORD is required",
    ]


def test_malformed_values_name_file_and_line(tmp_path):
    path = write(tmp_path, REPLICAS="two", SSH_PORT="70000", PUBLISH_MODE="mesh", ENDPOINT_MODE="vips",
                 PROXY="yes", STACK_NAME="Shop!", REGISTRY="https://r.example.com", MANAGER_HOST="bad host",
                 REMOTE_DIR="relative/dir", HEALTH_URL="ftp://x", DJANGO_SECRET_KEY="short")
    assert problems(tmp_path) == [
        f"{path}:1: MANAGER_HOST must be a host name or IP address (got 'bad host')",
        f"{path}:2: STACK_NAME must be lowercase letters, digits, '-' or '_', starting with a letter (got 'Shop!')",
        f"{path}:3: REGISTRY must be host[:port] without a scheme (got 'https://r.example.com')",
        f"{path}:12: SSH_PORT must be a whole number from 1 to 65535 (got '70000')",
        f"{path}:11: REPLICAS must be a whole number from 1 to 100 (got 'two')",
        f"{path}:13: PUBLISH_MODE must be one of ingress, host (got 'mesh')",
        f"{path}:14: ENDPOINT_MODE must be one of vip, dnsrr (got 'vips')",
        f"{path}:15: PROXY must be one of on, off (got 'yes')",
        f"{path}:6: DJANGO_SECRET_KEY is too weak (at least 50 characters, 5 distinct); generate one with: "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'",
        f"{path}:16: REMOTE_DIR must be an absolute path (got 'relative/dir')",
        f"{path}:17: HEALTH_URL must start with http:// or https:// (got 'ftp://x')",
    ]


def test_unparsable_line_and_unknown_key(tmp_path):
    path = write(tmp_path, text="MANAGER_HOST=m\nnot a line\n")
    with pytest.raises(ConfigError) as err:
        config.load("prod", env_dir=tmp_path, environ={})
    assert err.value.problems == [f"{path}:2: cannot parse this line (expected KEY=value)"]
    path = write(tmp_path, REPLICA="3")
    assert f"{path}:11: unknown key REPLICA (a typo? see deploy/prod.env.example)" in problems(tmp_path)


def test_proxy_off_with_host_mode_needs_one_replica(tmp_path):
    path = write(tmp_path, PROXY="off", PUBLISH_MODE="host", REPLICAS="2", TLS_MODE="external", TRUSTED_LB="10.0.0.1")
    assert problems(tmp_path) == [
        f"{path}:11: PROXY=off with PUBLISH_MODE=host admits one app task per node and no start-first update; "
        "use PROXY=on (or PUBLISH_MODE=ingress where the routing mesh works)"]


def test_precedence_flag_over_environment_over_file_over_default(tmp_path):
    write(tmp_path, REPLICAS="3", PUBLISHED_PORT="8080")
    env = {"DJDEPLOY_REPLICAS": "4", "DJDEPLOY_SSH_PORT": "2200", "REPLICAS": "9"}
    cfg = config.load("prod", env_dir=tmp_path, environ=env, flags={"REPLICAS": 5})
    assert (cfg.replicas, cfg.ssh_port, cfg.published_port, cfg.ssh_user) == (5, 2200, 8080, "root")
    cfg = config.load("prod", env_dir=tmp_path, environ=env)
    assert cfg.replicas == 4


def test_environment_value_errors_name_the_variable(tmp_path):
    write(tmp_path)
    assert problems(tmp_path, environ={"DJDEPLOY_REPLICAS": "0"}) == [
        "environment DJDEPLOY_REPLICAS: REPLICAS must be a whole number from 1 to 100 (got '0')"]


def test_secret_from_file(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    write(tmp_path, REGISTRY_PASSWORD=None, REGISTRY_PASSWORD_FILE="pw")
    assert config.load("prod", env_dir=tmp_path, environ={}).registry_password == "from-file"


def test_secret_file_errors(tmp_path):
    path = write(tmp_path, REGISTRY_PASSWORD_FILE="missing")
    assert problems(tmp_path) == [f"{path}:11: set REGISTRY_PASSWORD or REGISTRY_PASSWORD_FILE, not both"]
    path = write(tmp_path, REGISTRY_PASSWORD=None, REGISTRY_PASSWORD_FILE="missing")
    assert problems(tmp_path) == [
        f"{path}:10: cannot read {tmp_path / 'missing'} (No such file or directory)",
        f"{path}: REGISTRY_PASSWORD is required"]


def test_committed_examples_cover_every_required_key():
    for name in ("prod.env.example", "staging.env.example", "lab.env.example"):
        text = (config.DEPLOY_DIR / name).read_text()
        keys = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
        keys = {k[:-5] if k.endswith("_FILE") and k[:-5] in config.SECRET_KEYS else k for k in keys}
        assert set(config.REQUIRED) <= keys, name
        assert keys <= config.KNOWN, name


def test_secret_file_from_the_environment_overrides_the_file(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("from-env-file\n")
    write(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = config.load("prod", env_dir=tmp_path, environ={"DJDEPLOY_REGISTRY_PASSWORD_FILE": "pw",
                                                          "DJDEPLOY_POSTGRES_PASSWORD_FILE": str(tmp_path / "pw")})
    assert (cfg.registry_password, cfg.postgres_password) == ("from-env-file", "from-env-file")


def test_secret_file_from_the_environment_errors(tmp_path):
    write(tmp_path)
    assert problems(tmp_path, environ={"DJDEPLOY_REGISTRY_PASSWORD": "x", "DJDEPLOY_REGISTRY_PASSWORD_FILE": "/p"}) == [
        "environment: set DJDEPLOY_REGISTRY_PASSWORD or DJDEPLOY_REGISTRY_PASSWORD_FILE, not both"]
    assert problems(tmp_path, environ={"DJDEPLOY_POSTGRES_PASSWORD_FILE": "/nonexistent/pw"}) == [
        "environment DJDEPLOY_POSTGRES_PASSWORD_FILE: cannot read /nonexistent/pw (No such file or directory)"]


def test_placeholder_secrets_of_the_examples_are_refused_without_printing_them(tmp_path):
    path = write(tmp_path, REGISTRY_PASSWORD="change-me", POSTGRES_PASSWORD="Change-Me-2",
                 DJANGO_SECRET_KEY="change-me-to-50-random-characters-python3-c-import-secrets")
    found = problems(tmp_path)
    assert found == [
        f"{path}:5: REGISTRY_PASSWORD is the placeholder of deploy/prod.env.example; set a real secret",
        f"{path}:6: DJANGO_SECRET_KEY is the placeholder of deploy/prod.env.example; set a real secret",
        f"{path}:7: POSTGRES_PASSWORD is the placeholder of deploy/prod.env.example; set a real secret"]
    assert "change" not in " ".join(found).replace("deploy/prod.env.example", "")
    assert problems(tmp_path, environ={"DJDEPLOY_REGISTRY_PASSWORD": "change-me"})[0] == (
        "environment DJDEPLOY_REGISTRY_PASSWORD: REGISTRY_PASSWORD is the placeholder of deploy/prod.env.example; "
        "set a real secret")


def test_placeholders_are_read_from_every_committed_example():
    values = config.placeholder_values()
    assert values["change-me"] == "prod.env.example"
    assert set(values) == {"change-me", "change-me-to-50-random-characters-python3-c-import-secrets"}


def test_unknown_djdeploy_variables_are_reported_as_typos_with_the_closest_key(tmp_path):
    write(tmp_path)
    assert problems(tmp_path, environ={"DJDEPLOY_REPLICA": "3", "DJDEPLOY_REGISTRY_PASWORD_FILE": "/x",
                                       "DJDEPLOY_ZZZ": "1", "DJDEPLOY_LAB_DIR": "/ok", "DJDEPLOY_ENV_DIR": "/ok",
                                       "DJDEPLOY_SETTINGS_MODULE": "config.settings"}) == [
        "environment DJDEPLOY_REGISTRY_PASWORD_FILE: unknown variable (a typo? did you mean "
        "DJDEPLOY_REGISTRY_PASSWORD_FILE?); the keys are listed in deploy/prod.env.example",
        "environment DJDEPLOY_REPLICA: unknown variable (a typo? did you mean DJDEPLOY_REPLICAS?); the keys are "
        "listed in deploy/prod.env.example",
        "environment DJDEPLOY_ZZZ: unknown variable (a typo?); the keys are listed in deploy/prod.env.example"]


def test_allow_dirty_and_limits(tmp_path):
    write(tmp_path)
    cfg = config.load("prod", env_dir=tmp_path, environ={})
    assert cfg.allow_dirty is False
    assert (cfg.app_memory, cfg.app_cpus, cfg.app_pids) == ("512M", "1", 256)
    assert (cfg.db_memory, cfg.db_cpus, cfg.db_pids) == ("1G", "1", 512)
    assert (cfg.proxy_memory, cfg.proxy_cpus, cfg.proxy_pids) == ("256M", "0.5", 128)
    assert config.load("prod", env_dir=tmp_path, environ={}, flags={"ALLOW_DIRTY": "on"}).allow_dirty is True
    path = write(tmp_path, ALLOW_DIRTY="yes", APP_MEMORY="lots", DB_CPUS="0", PROXY_PIDS="5")
    assert problems(tmp_path) == [
        f"{path}:11: ALLOW_DIRTY must be one of on, off (got 'yes')",
        f"{path}:12: APP_MEMORY must be a size like 512M or 2G (got 'lots')",
        f"{path}:13: DB_CPUS must be a number of CPUs like 0.5 or 2 (got '0')",
        f"{path}:14: PROXY_PIDS must be a whole number from 16 to 100000 (got '5')"]


def test_the_lab_environment_allows_dirty_trees_and_loads(tmp_path, monkeypatch):
    from deploy.lab import deploy_env, paths

    for name in ("SSH_KEY", "KNOWN_HOSTS", "REGISTRY_PASSWORD_FILE"):
        target = tmp_path / name.lower()
        target.write_text("x" * 60)
        monkeypatch.setattr(paths, name, target)
    monkeypatch.setattr(deploy_env, "SECRETS_DIR", tmp_path / "secrets")
    deploy_env.write_lab_env(tmp_path, name="lab", stack="djx", port=18080)
    cfg = config.load("lab", env_dir=tmp_path, environ={})
    assert cfg.allow_dirty is True and (cfg.stack_name, cfg.published_port) == ("djx", 18080)
    assert "ALLOW_DIRTY=on" in (config.EXAMPLE_DIR / "lab.env.example").read_text().splitlines()
    for name in ("prod", "staging"):
        assert "ALLOW_DIRTY=off" in (config.EXAMPLE_DIR / f"{name}.env.example").read_text().splitlines()
