"""`inv up --dev`: the image's settings (djdeploy_django.settings: the project's own module named by
DJDEPLOY_SETTINGS_MODULE, with the contract on top), plus what a live edit loop needs (docker-compose.dev.yml):

- templates are read from disk on every render (no cached loader), so a saved template shows on the next request;
- static files are served by Django's static view from the apps' source directories (the image's collected
  /app/staticfiles is hidden by the source mount);
- DEBUG is on (development only: this module is mounted by docker-compose.dev.yml and is not in the image);
- a saved Python file reloads the uWSGI worker (djdeploy_dev.reloader; the master and the image stay the same).
"""

import os

from djdeploy_dev import reloader

if os.environ.get("DJDEPLOY_DEV_RELOADER", "on") != "off":  # off: e.g. to compare with uWSGI's py-autoreload
    reloader.start([os.environ.get("DJDEPLOY_DEV_SOURCE", "/app"), os.path.dirname(os.path.dirname(__file__))],
                   float(os.environ.get("DJDEPLOY_DEV_POLL", "0.25")))

from djdeploy_django.settings import *  # noqa: E402,F401,F403
from djdeploy_django.settings import ROOT_URLCONF, TEMPLATES  # noqa: E402

DEBUG = True
DJDEPLOY_DEV_PROJECT_URLCONF = ROOT_URLCONF
ROOT_URLCONF = "djdeploy_dev.urls"
TEMPLATES = [{**TEMPLATES[0], "APP_DIRS": False, "OPTIONS": {
    **TEMPLATES[0].get("OPTIONS", {}),
    "loaders": ["django.template.loaders.filesystem.Loader", "django.template.loaders.app_directories.Loader"],
}}]
