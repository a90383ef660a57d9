import io

import pytest
from invoke import Context, MockContext, Result

from deploy.core.envfile import parse_env
from deploy.core.errors import CommandFailed, ConfigError
from deploy.core.gitinfo import tag_for
from deploy.core.runner import REDACTED, Runner, redact


def test_redact_longest_first():
    assert redact("pw=abc abcdef", ["abc", "abcdef"]) == f"pw={REDACTED} {REDACTED}"


def test_runner_echoes_redacted_and_quotes():
    out = io.StringIO()
    r = Runner(ctx=MockContext(run={"echo 'a b' s3cret": Result("s3cret\n")}), secrets=("s3cret",), out=out)
    res = r.run(["echo", "a b", "s3cret"], hide=True)
    assert out.getvalue() == f"[local] $ echo 'a b' {REDACTED}\n"
    assert res.stdout == f"{REDACTED}\n"
    assert r.history == [("local", f"echo 'a b' {REDACTED}")]


def test_runner_dry_run_runs_nothing():
    out = io.StringIO()
    r = Runner(ctx=MockContext(), dry_run=True, out=out)
    r.run(["rm", "-rf", "/"])
    r.put("secret", "/tmp/x.env")
    assert out.getvalue().splitlines() == ["[local] (dry run) $ rm -rf /", "[local] (dry run) put /tmp/x.env (mode 0600, 6 bytes)"]


def test_runner_failure_is_redacted_command_failed():
    r = Runner(ctx=Context(), secrets=("hunter2",), out=io.StringIO())
    with pytest.raises(CommandFailed) as err:
        r.run(["sh", "-c", "echo hunter2 >&2; exit 3", "hunter2"], hide=True)
    assert err.value.exit_code == 3
    assert "hunter2" not in str(err.value)
    assert REDACTED in err.value.output_tail


def test_runner_timeout_names_command():
    r = Runner(ctx=Context(), out=io.StringIO())
    with pytest.raises(CommandFailed, match=r"timed out after 0.5s: sleep 5"):
        r.run(["sleep", "5"], timeout=0.5, hide=True)


def test_runner_put_mode(tmp_path):
    r = Runner(ctx=Context(), out=io.StringIO())
    r.put("A=1\n", str(tmp_path / "x.env"))
    assert (tmp_path / "x.env").stat().st_mode & 0o777 == 0o600


def test_env_parse_reports_every_bad_line():
    with pytest.raises(ConfigError) as err:
        parse_env("A=1\nnot valid\nB\nC=3\n", source="prod.env")
    assert err.value.problems == [
        "prod.env:2: cannot parse this line (expected KEY=value)",
        "prod.env:3: B has no '=value'",
    ]


def test_env_parse_values_and_lines():
    vals = parse_env("# c\nexport A='x y'\nB=2\n")
    assert (vals["A"].value, vals["A"].line, vals["B"].line) == ("x y", 2, 3)


def test_tag_for():
    assert tag_for("abc1234", False) == "abc1234"
    assert tag_for("abc1234", True) == "abc1234-dirty"


def test_stdin_is_handed_over_whole_not_one_byte_per_10ms():
    from deploy.core.runner import WholeStream

    stream = WholeStream("a" * 5000)
    assert stream.read(1) == "a" * 5000 and stream.read(1) == ""
    r = Runner(ctx=Context(), out=io.StringIO(), echo=False)
    assert r.run(["wc", "-c"], stdin="x" * 5000, hide=True).stdout.strip() == "5000"
