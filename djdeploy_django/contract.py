"""The image contract applied to a settings namespace: ``apply(globals())`` at the end of a settings module.

Everything that varies between deployments comes from the environment (djdeploy_django.env: a missing or invalid
variable is one line naming it, never its value); the project keeps what is its own (apps, URLs, templates).
"""

from __future__ import annotations

import os
from pathlib import Path

from djdeploy_django import CONTRACT_VERSION, env, storage
from djdeploy_django.env import EnvError  # noqa: F401 - re-exported for settings modules

# Outermost first: the version header wraps every answer (the health endpoint's too), and the health endpoint
# answers before the project's own middleware and URLs (no URLconf change needed).
MIDDLEWARE = ["djdeploy_django.middleware.AppVersionMiddleware", "djdeploy_django.middleware.HealthMiddleware"]
MANIFEST = "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
DB_SESSIONS = "django.contrib.sessions.backends.db"
POSTGRES_APP = "django.contrib.postgres"


def _database(environ) -> dict:
    db = env.database(environ)
    if db is None:
        return {}
    db["OPTIONS"].setdefault("connect_timeout", "5")
    return {"default": {**db, "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True}}


def _security(ns: dict, environ) -> None:
    # TLS ends at the front proxy. Forwarded-proto is trusted only from DJANGO_TRUSTED_PROXY (djdeploy_django.wsgi
    # strips X-Forwarded-Proto/-Ssl from anyone else before Django sees them), so a direct client cannot fake HTTPS.
    ns["TRUSTED_PROXIES"] = env.trusted_proxies(environ)
    ns["SECURE_PROXY_SSL_HEADER"] = ("HTTP_X_FORWARDED_PROTO", "https") if ns["TRUSTED_PROXIES"] else None
    ns["SESSION_COOKIE_SECURE"] = ns["CSRF_COOKIE_SECURE"] = env.boolean("DJANGO_SECURE_COOKIES", True, environ)
    ns["SESSION_COOKIE_HTTPONLY"] = True
    ns["SECURE_HSTS_SECONDS"] = env.integer("DJANGO_HSTS_SECONDS", 31536000, environ)
    ns["SECURE_HSTS_INCLUDE_SUBDOMAINS"] = env.boolean("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True, environ)
    ns["SECURE_HSTS_PRELOAD"] = env.boolean("DJANGO_HSTS_PRELOAD", True, environ)
    ns["SECURE_CONTENT_TYPE_NOSNIFF"] = True
    ns.setdefault("X_FRAME_OPTIONS", "DENY")
    # The redirect to HTTPS is the front proxy's job: the app must answer plain HTTP from the proxy, the container
    # health check and the smoke test. DJANGO_SECURE_SSL_REDIRECT=on redirects in Django too.
    ns["SECURE_SSL_REDIRECT"] = env.boolean("DJANGO_SECURE_SSL_REDIRECT", False, environ)
    silenced = [c for c in ns.get("SILENCED_SYSTEM_CHECKS", []) if c != "security.W008"]
    ns["SILENCED_SYSTEM_CHECKS"] = silenced if ns["SECURE_SSL_REDIRECT"] or ns["DEBUG"] else [*silenced, "security.W008"]
    origins = environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "")
    ns["CSRF_TRUSTED_ORIGINS"] = [o.strip() for o in origins.split(",") if o.strip()]


def _static(ns: dict) -> None:
    # uWSGI serves /static/ from <BASE_DIR>/staticfiles (the image's /app/staticfiles), hashed names far-future.
    base = Path(ns.get("BASE_DIR") or os.getcwd())
    ns["STATIC_URL"] = "/static/"
    ns["STATIC_ROOT"] = base / "staticfiles"
    storages = dict(ns.get("STORAGES") or {})
    storages.setdefault("default", {"BACKEND": "django.core.files.storage.FileSystemStorage"})
    storages["staticfiles"] = {"BACKEND": MANIFEST}
    ns["STORAGES"] = storages


def apply(ns: dict, environ=None) -> dict:
    """Apply the contract to a settings namespace (``globals()`` of a settings module); idempotent."""
    environ = os.environ if environ is None else environ
    ns["SECRET_KEY"] = env.secret_key(environ)
    ns["DEBUG"] = env.boolean("DJANGO_DEBUG", False, environ)
    ns["ALLOWED_HOSTS"] = env.allowed_hosts(environ)
    ns["APP_VERSION"] = environ.get("APP_VERSION", "dev")
    ns["DATABASES"] = _database(environ)
    if not ns["DATABASES"] and ns.get("SESSION_ENGINE", DB_SESSIONS) == DB_SESSIONS:
        # No database (DATABASE_URL=''): sessions in signed cookies, so pages and the admin login form render.
        ns["SESSION_ENGINE"] = "django.contrib.sessions.backends.signed_cookies"
    apps = list(ns.get("INSTALLED_APPS", []))
    if ns["DATABASES"] and POSTGRES_APP not in apps:
        # The database is Postgres: models with Postgres-only indexes (e.g. Wagtail's search GinIndex) need it.
        ns["INSTALLED_APPS"] = apps + [POSTGRES_APP]
    ns["MIDDLEWARE"] = MIDDLEWARE + [m for m in ns.get("MIDDLEWARE", []) if m not in MIDDLEWARE]
    _static(ns)
    storage.apply(ns, environ)   # uploads: S3 (AWS_STORAGE_BUCKET_NAME) or a volume (DJANGO_MEDIA_ROOT)
    _security(ns, environ)
    ns.setdefault("LOGGING", {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "root": {"handlers": ["console"], "level": "WARNING"},
    })
    ns["DJDEPLOY_CONTRACT"] = CONTRACT_VERSION
    return ns
