"""Invoke entry point: every djdeploy task (`inv --list`). Any project using the toolkit has this same line."""

from deploy.tasks import ns  # noqa: F401
