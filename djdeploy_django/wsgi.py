"""The WSGI entry point of every djdeploy image (``UWSGI_MODULE=djdeploy_django.wsgi:application``).

Loads the project's own WSGI application (its ``WSGI_APPLICATION`` setting, e.g. ``mysite.wsgi.application``)
and wraps it so that a client cannot fake HTTPS: X-Forwarded-Proto / X-Forwarded-Ssl (and the scheme uWSGI
derives from them) are dropped unless the request comes from DJANGO_TRUSTED_PROXY. A settings error is one line.
"""

import ipaddress
import os
import signal
import sys


def _stop_while_loading(signum, frame):
    """SIGHUP (uWSGI's graceful stop) while this worker still loads Django: the worker has nothing to drain."""
    sys.stderr.write(f"worker {os.getpid()} stopped while loading the app (graceful stop)\n")
    os._exit(17)  # uWSGI's own code for a gracefully stopped worker


# uWSGI 2.0.30 ignores SIGHUP in a lazy-apps worker until its app is loaded, while the master's
# gracefully_kill_them_all (docker stop) waits for every worker forever: a stop during the first ~0.5 s then took
# Docker's whole grace period. Handling it here closes that window; uWSGI installs its own handler right after.
try:
    import uwsgi  # noqa: F401 - exists only inside uWSGI
except ImportError:
    pass
else:
    signal.signal(signal.SIGHUP, _stop_while_loading)

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
