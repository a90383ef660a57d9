from django.conf import settings
from django.contrib import admin
from django.urls import path

from notes import views

urlpatterns = [
    path("", views.index, name="index"),
    path("health/", views.health, name="health"),
    path("admin/", admin.site.urls),
]

if settings.TEST_ENDPOINTS:  # off by default: only the image's own tests turn it on (see views.slow)
    urlpatterns.append(path("test/slow/", views.slow, name="slow"))
