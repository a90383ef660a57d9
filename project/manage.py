#!/usr/bin/env python3
"""Django's command-line utility; a configuration error is one line naming the variable."""

import os
import sys


def main():
    # The image contract wraps the app's own settings (config.settings): see djdeploy_django.settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djdeploy_django.settings")
    os.environ.setdefault("DJDEPLOY_SETTINGS_MODULE", "config.settings")
    from djdeploy_django.env import EnvError

    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - loads and validates the settings now
    except EnvError as exc:
        sys.exit(f"error: {exc}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
