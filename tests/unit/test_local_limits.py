"""deploy.local.limits: the hardened stack's resource limits, checked before `inv up` does anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy.core.errors import ConfigError
from deploy.local import limits, localenv
from deploy.local.compose import StackSettings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_pass_and_match_the_compose_file_and_env_example():
    assert limits.problems(dict(limits.DEFAULTS), cpu_count=1) == []
    compose = dict(re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", (ROOT / "docker-compose.yml").read_text()))
    example = dict(re.findall(r"^([A-Z_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M))
    for key, value in limits.DEFAULTS.items():
        assert compose[key] == value == example[key], key
        assert localenv.DEFAULTS[key] == value


@pytest.mark.parametrize("key,value,message", [
    ("APP_MEMORY", "lots", "APP_MEMORY='lots': give a size of at least 6m, e.g. 512m or 1g"),
    ("DB_MEMORY", "1m", "DB_MEMORY='1m': give a size of at least 6m, e.g. 512m or 1g"),
    ("APP_CPUS", "two", "APP_CPUS='two': give a number of CPUs from 0.01 to 2 (this machine's), e.g. 1.0"),
    ("APP_CPUS", "3", "APP_CPUS='3': give a number of CPUs from 0.01 to 2 (this machine's), e.g. 1.0"),
    ("DB_CPU_SHARES", "1", "DB_CPU_SHARES='1': give a relative CPU weight from 2 to 262144 (the engine's default "
                           "is 1024)"),
    ("APP_PIDS", "-1", "APP_PIDS='-1': give the most processes the container may run, e.g. 200"),
])
def test_each_bad_limit_is_one_line_naming_the_variable(key, value, message):
    assert limits.problems({key: value}, cpu_count=2) == [message]


def test_good_values_in_other_forms():
    assert limits.problems({"APP_MEMORY": "1G", "DB_MEMORY": "268435456", "APP_CPUS": "0.5", "DB_CPUS": "2"},
                           cpu_count=2) == []


def test_stack_settings_refuse_a_bad_limit_before_anything_runs():
    with pytest.raises(ConfigError) as exc:
        StackSettings.from_values(dict(localenv.DEFAULTS, APP_MEMORY="lots"), root=ROOT)
    assert "APP_MEMORY='lots': give a size of at least 6m, e.g. 512m or 1g" in str(exc.value)


def test_limits_from_the_environment_reach_the_settings(tmp_path):
    values = localenv.load(tmp_path, {"APP_PIDS": "150"})
    assert values["APP_PIDS"] == "150" and values["DB_PIDS"] == "200"
