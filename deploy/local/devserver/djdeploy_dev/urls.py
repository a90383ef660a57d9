"""The project's URLs plus Django's static view (DEBUG only), for `inv up --dev`."""

from django.contrib.staticfiles.urls import staticfiles_urlpatterns

from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [*staticfiles_urlpatterns(), *project_urlpatterns]
