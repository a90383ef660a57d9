"""The one runner: every command the toolkit runs, locally or on a remote host, goes through here.

Builders elsewhere return argument lists (``list[str]``) and never run anything. ``Runner.run``
quotes them (no shell string is ever built by interpolating values), echoes them with secrets
redacted, runs them through an Invoke ``Context`` or a Fabric ``Connection`` (same API), and turns
a failure or a timeout into ``CommandFailed``. With ``dry_run`` it prints and records the same
commands and runs none.
"""

from __future__ import annotations

import io
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from deploy.core.errors import CommandFailed

REDACTED = "********"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in ``text``; longest first so overlapping secrets stay hidden."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def quote(argv: Sequence[str]) -> str:
    """Shell-quote an argument list (builders return lists; no shell string is built from values)."""
    return shlex.join(str(a) for a in argv)


class WholeStream(io.StringIO):
    """stdin for a command. Invoke reads a stream that is not a terminal ONE byte per ``input_sleep`` (10 ms),
    i.e. 100 bytes/s (a 4 KB input took 40 s); this stream hands over everything on the first read."""

    def read(self, size: int | None = -1) -> str:
        return super().read(-1)


class RedactingStream(io.TextIOBase):
    """A line-buffered text stream that redacts secrets before writing to ``target``."""

    def __init__(self, target, secrets: Iterable[str], prefix: str = ""):
        self.target = target
        self.secrets = tuple(secrets)
        self.prefix = prefix
        self._buf = ""

    def write(self, s: str) -> int:
        self._buf += s
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self.target.write(self.prefix + redact(line, self.secrets) + "\n")
        self.target.flush()
        return len(s)

    def flush(self) -> None:
        if self._buf:
            self.target.write(self.prefix + redact(self._buf, self.secrets))
            self._buf = ""
        self.target.flush()


@dataclass
class Outcome:
    """What a command returned (stdout/stderr are redacted)."""

    command: str
    exited: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exited == 0


@dataclass
class Runner:
    """Runs commands through ``ctx`` (an Invoke Context or a Fabric Connection).

    ``where`` names the host in echoed lines ("local" or e.g. "root@manager").
    ``history`` keeps every command (redacted) in order: what a dry run prints is what a real run ran.
    """

    ctx: object = None
    where: str = "local"
    secrets: tuple = ()
    dry_run: bool = False
    echo: bool = True
    out: object = field(default=sys.stdout, repr=False)
    history: list = field(default_factory=list)

    def add_secrets(self, *values: str) -> None:
        self.secrets = tuple(self.secrets) + tuple(v for v in values if v)

    def describe(self, argv) -> str:
        return redact(quote(argv), self.secrets)

    def _say(self, line: str) -> None:
        if self.echo:
            self.out.write(line + "\n")
            self.out.flush()

    def run(self, argv, *, stdin: str | None = None, timeout: float | None = None,
            check: bool = True, hide: bool = False, pty: bool = False) -> Outcome:
        """Run ``argv``; raise ``CommandFailed`` (redacted, with the output tail) if it fails and ``check``."""
        shown = self.describe(argv)
        self.history.append((self.where, shown))
        self._say(f"[{self.where}]{' (dry run)' if self.dry_run else ''} $ {shown}")
        if self.dry_run:
            return Outcome(command=shown)
        from invoke.exceptions import CommandTimedOut, UnexpectedExit

        kwargs = dict(warn=True, hide=True, pty=pty, timeout=timeout, echo=False)
        if stdin is not None:
            kwargs["in_stream"] = WholeStream(stdin)
        else:
            kwargs["in_stream"] = False
        if not hide:
            kwargs["hide"] = False
            kwargs["out_stream"] = RedactingStream(self.out, self.secrets)
            kwargs["err_stream"] = RedactingStream(sys.stderr, self.secrets)
        started = time.monotonic()
        try:
            result = self.ctx.run(quote(argv), **kwargs)
        except CommandTimedOut:
            raise CommandFailed(shown, timed_out=True, timeout=timeout) from None
        except UnexpectedExit as exc:  # only raised when warn=False; kept for safety
            result = exc.result
        finally:
            for stream in ("out_stream", "err_stream"):
                if stream in kwargs:
                    kwargs[stream].flush()
        if timeout is not None and result.exited == -1 and time.monotonic() - started >= timeout:
            # Invoke races here: its timer closed a Fabric channel (exit -1) but is still "alive", so
            # CommandTimedOut was not raised. It is a timeout all the same.
            raise CommandFailed(shown, timed_out=True, timeout=timeout)
        outcome = Outcome(command=shown, exited=result.exited,
                          stdout=redact(result.stdout or "", self.secrets),
                          stderr=redact(result.stderr or "", self.secrets))
        if check and not outcome.ok:
            tail = "\n".join((outcome.stderr or outcome.stdout).strip().splitlines()[-10:])
            raise CommandFailed(shown, exit_code=outcome.exited, output_tail=tail)
        return outcome

    def put(self, content: str | bytes, path: str, mode: int = 0o600) -> None:
        """Write ``content`` to ``path`` where commands run, with ``mode`` (default 0600).

        The content never appears in the echo: only the path, the mode and the size do.
        """
        data = content.encode() if isinstance(content, str) else content
        shown = f"put {path} (mode {mode:04o}, {len(data)} bytes)"
        self.history.append((self.where, shown))
        self._say(f"[{self.where}]{' (dry run)' if self.dry_run else ''} {shown}")
        if self.dry_run:
            return
        if hasattr(self.ctx, "sftp"):  # Fabric Connection
            sftp = self.ctx.sftp()
            with sftp.open(path, "wb") as fh:
                fh.chmod(mode)
                fh.write(data)
            sftp.chmod(path, mode)
        else:
            import os

            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(path, mode)
