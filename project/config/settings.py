"""Production settings, from the environment only (12-factor). Production values have no defaults:
a missing or invalid variable stops startup with one line that names it (config.env.EnvError).

For development, a ``.env`` file next to manage.py is read first (python-dotenv; real environment wins).
"""

from pathlib import Path

from config import env

BASE_DIR = Path(__file__).resolve().parent.parent

try:  # development convenience; the image never contains a .env (.dockerignore)
    from dotenv import load_dotenv

    load_dotenv(BASE_DIR / ".env", override=False)
except ImportError:  # pragma: no cover
    pass

SECRET_KEY = env.secret_key()
DEBUG = env.boolean("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env.allowed_hosts()
APP_VERSION = env.os.environ.get("APP_VERSION", "dev")

_db = env.database()
DATABASES = {"default": {**_db, "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True}} if _db else {}
if _db:
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", "5")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "notes",
]

MIDDLEWARE = [
    "config.middleware.AppVersionMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

# Without a database (DATABASE_URL=''), sessions live in signed cookies so pages and the admin login form render.
SESSION_ENGINE = "django.contrib.sessions.backends.db" if _db else "django.contrib.sessions.backends.signed_cookies"
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names (app.3f2a9c1b04de.css): uWSGI gives those, and only those, far-future expiry.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- HTTPS and proxies -------------------------------------------------------------------------------------
# TLS ends at the front proxy. Forwarded-proto is trusted only from DJANGO_TRUSTED_PROXY (config.wsgi strips
# X-Forwarded-Proto/-Ssl from anyone else before Django sees them), so a direct client cannot fake HTTPS.
TRUSTED_PROXIES = env.trusted_proxies()
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXIES else None
# Secure cookies by default; DJANGO_SECURE_COOKIES=off only for plain-HTTP development.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.boolean("DJANGO_SECURE_COOKIES", True)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.integer("DJANGO_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.boolean("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env.boolean("DJANGO_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# The redirect to HTTPS is the front proxy's job: the app must answer plain HTTP from the proxy, the container
# health check and the smoke test. Set DJANGO_SECURE_SSL_REDIRECT=on to redirect in Django too.
SECURE_SSL_REDIRECT = env.boolean("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SILENCED_SYSTEM_CHECKS = [] if SECURE_SSL_REDIRECT or DEBUG else ["security.W008"]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env.os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",")
                        if o.strip()]

TEST_ENDPOINTS = env.boolean("DJANGO_TEST_ENDPOINTS", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
