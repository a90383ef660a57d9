"""The project's URLs (its own ROOT_URLCONF) plus Django's static view (DEBUG only), for `inv up --dev`."""

import importlib

from django.conf import settings
from django.contrib.staticfiles.urls import staticfiles_urlpatterns

urlpatterns = [*staticfiles_urlpatterns(),
               *importlib.import_module(settings.DJDEPLOY_DEV_PROJECT_URLCONF).urlpatterns]
