"""Errors that are reported to the user as one line, never as a traceback.

Code below the task layer raises these; the task layer (deploy.tasks._base.reports_errors)
turns them into ``invoke.Exit`` with exit code 1.
"""


class ToolkitError(Exception):
    """A failure the user can act on; str(err) is the whole message: what is wrong; what to do."""


class ConfigError(ToolkitError):
    """One or more configuration problems, all reported together."""

    def __init__(self, problems, source=None):
        self.problems = list(problems)
        self.source = source
        head = f"invalid configuration in {source}" if source else "invalid configuration"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class CommandFailed(ToolkitError):
    """A command exited non-zero or timed out. The command text is already redacted."""

    def __init__(self, command, exit_code=None, output_tail="", timed_out=False, timeout=None):
        self.command = command
        self.exit_code = exit_code
        self.output_tail = output_tail
        self.timed_out = timed_out
        if timed_out:
            msg = f"timed out after {timeout:g}s: {command}"
        else:
            msg = f"command failed (exit {exit_code}): {command}"
        if output_tail:
            msg += "\n" + output_tail
        super().__init__(msg)


class EngineUnavailable(ToolkitError):
    """No Docker engine answers."""
