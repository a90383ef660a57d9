"""The app's WSGI application (WSGI_APPLICATION). The image serves it through djdeploy_django.wsgi, which adds
the forwarded-proto trust rule in front of it."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djdeploy_django.settings")
os.environ.setdefault("DJDEPLOY_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
