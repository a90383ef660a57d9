"""`inv up --dev`: the project's own settings, plus what a live edit loop needs (docker-compose.dev.yml).

- templates are read from disk on every render (no cached loader), so a saved template shows on the next request;
- static files are served by Django's static view from the app and admin source directories (the image's
  collected /app/staticfiles is hidden by the source mount);
- DEBUG is on (development only: this module is mounted by docker-compose.dev.yml and is not in the image).
Python edits are picked up by uWSGI's py-autoreload (UWSGI_PY_AUTORELOAD in docker-compose.dev.yml).
"""

from config.settings import *  # noqa: F401,F403
from config.settings import TEMPLATES

DEBUG = True
ROOT_URLCONF = "djdeploy_dev.urls"
TEMPLATES = [{**TEMPLATES[0], "APP_DIRS": False, "OPTIONS": {
    **TEMPLATES[0]["OPTIONS"],
    "loaders": ["django.template.loaders.filesystem.Loader", "django.template.loaders.app_directories.Loader"],
}}]
