"""WSGI entry point for uWSGI (UWSGI_WSGI_FILE) and any other WSGI server.

Wraps Django so that a client cannot fake HTTPS: X-Forwarded-Proto / X-Forwarded-Ssl (and the scheme uWSGI
derives from them) are dropped unless the request comes from DJANGO_TRUSTED_PROXY.
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

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config.env import EnvError  # noqa: E402

try:
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    django_application = get_wsgi_application()
    TRUSTED = settings.TRUSTED_PROXIES
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
    return django_application(environ, start_response)
