from django.conf import settings
from django.contrib import admin
from django.urls import path

from notes import views

# /health/ is answered by djdeploy_django.middleware.HealthMiddleware (the image contract), before these URLs.
urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
]

if settings.TEST_ENDPOINTS:  # off by default: only the image's own tests turn it on (see views.slow)
    urlpatterns.append(path("test/slow/", views.slow, name="slow"))
    urlpatterns.append(path("test/upload/", views.upload, name="upload"))
