"""What every task shares: ToolkitError becomes a one-line ``Exit`` (code 1), never a traceback."""

from __future__ import annotations

import functools

from invoke import Exit
from invoke import task as invoke_task

from deploy.core.errors import ToolkitError


def reports_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ToolkitError as exc:
            raise Exit(f"error: {exc}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


def task(*args, **kwargs):
    """``invoke.task`` whose body reports ToolkitError as one line. Use like ``@task(help={...})``."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return invoke_task(reports_errors(args[0]))

    def decorate(fn):
        return invoke_task(*args, **kwargs)(reports_errors(fn))

    return decorate
