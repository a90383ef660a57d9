"""The contract's middleware (djdeploy_django.contract puts both first in MIDDLEWARE).

- AppVersionMiddleware: every Django response carries X-App-Version (the image's APP_VERSION); deploy checks read it.
- HealthMiddleware: ``GET /health/`` is liveness (200 "ok" without touching the database); ``?ready=1`` is
  readiness and also checks the database (503 when it does not answer). It answers before the project's own
  middleware and URLs, so no URLconf needs changing.
"""

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse

HEALTH_PATH = "/health/"


class AppVersionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.version = settings.APP_VERSION

    def __call__(self, request):
        response = self.get_response(request)
        response["X-App-Version"] = self.version
        return response


def has_database() -> bool:
    return bool(settings.DATABASES.get("default", {}).get("NAME"))


def database_ready() -> bool:
    try:
        # a fresh connection (connect_timeout applies): a kept-alive one could hang on a frozen server
        connection.close()
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return False
    return True


def health(request):
    if request.method != "GET":
        response = HttpResponse(status=405)
        response["Allow"] = "GET"
        return response
    if request.GET.get("ready") and has_database() and not database_ready():
        return HttpResponse("database unavailable", status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")


class HealthMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == HEALTH_PATH:
            return health(request)
        return self.get_response(request)
