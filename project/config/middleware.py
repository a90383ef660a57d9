"""Every Django response carries X-App-Version (the image's APP_VERSION): deploy checks read it."""

from django.conf import settings


class AppVersionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.version = settings.APP_VERSION

    def __call__(self, request):
        response = self.get_response(request)
        response["X-App-Version"] = self.version
        return response
