"""`inv up --dev`: the project's own settings, plus what a live edit loop needs (docker-compose.dev.yml).

- templates are read from disk on every render (no cached loader), so a saved template shows on the next request;
- static files are served by Django's static view from the app and admin source directories (the image's
  collected /app/staticfiles is hidden by the source mount);
- DEBUG is on (development only: this module is mounted by docker-compose.dev.yml and is not in the image).
- a saved Python file reloads the uWSGI worker (djdeploy_dev.reloader; the master and the image stay the same).
"""

import os

from djdeploy_dev import reloader

if os.environ.get("DJDEPLOY_DEV_RELOADER", "on") != "off":  # off: e.g. to compare with uWSGI's py-autoreload
    reloader.start([os.environ.get("DJDEPLOY_DEV_SOURCE", "/app"), os.path.dirname(os.path.dirname(__file__))],
                   float(os.environ.get("DJDEPLOY_DEV_POLL", "0.25")))

from config.settings import *  # noqa: E402,F401,F403
from config.settings import TEMPLATES  # noqa: E402

DEBUG = True
ROOT_URLCONF = "djdeploy_dev.urls"
TEMPLATES = [{**TEMPLATES[0], "APP_DIRS": False, "OPTIONS": {
    **TEMPLATES[0]["OPTIONS"],
    "loaders": ["django.template.loaders.filesystem.Loader", "django.template.loaders.app_directories.Loader"],
}}]
