"""The WSGI entry point of every djdeploy image (``UWSGI_MODULE=djdeploy_django.wsgi:application``).

Loads the project's own WSGI application (its ``WSGI_APPLICATION`` setting, e.g. ``mysite.wsgi.application``)
and wraps it so that a client cannot fake HTTPS: X-Forwarded-Proto / X-Forwarded-Ssl (and the scheme uWSGI
derives from them) are dropped unless the request comes from DJANGO_TRUSTED_PROXY. A settings error is one line.
"""

import ipaddress
import os
import sys

if os.getcwd() not in sys.path:  # the project's modules live in the working directory (/app in the image)
    sys.path.insert(0, os.getcwd())

from djdeploy_django.env import EnvError  # noqa: E402

try:
    from django.conf import settings
    from django.core.servers.basehttp import get_internal_wsgi_application

    project_application = get_internal_wsgi_application()
    TRUSTED = getattr(settings, "TRUSTED_PROXIES", ())
except EnvError as exc:
    sys.stderr.write(f"error: {exc}\n")
    raise SystemExit(1) from None

FORWARDED = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_SSL", "HTTP_X_FORWARDED_SCHEME", "HTTP_FORWARDED", "HTTPS")


def from_trusted_proxy(environ, trusted=None):
    trusted = TRUSTED if trusted is None else trusted
    try:
        addr = ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(addr in net for net in trusted)


def application(environ, start_response):
    if not from_trusted_proxy(environ):
        for key in FORWARDED:
            environ.pop(key, None)
        environ["wsgi.url_scheme"] = "http"
    return project_application(environ, start_response)
