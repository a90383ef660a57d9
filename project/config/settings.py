"""The bundled app's own settings: what is the app's (apps, URLs, templates). Everything that varies between
deployments comes from the environment through the image contract: the image runs
DJANGO_SETTINGS_MODULE=djdeploy_django.settings with DJDEPLOY_SETTINGS_MODULE=config.settings, which takes these
names and applies djdeploy_django.contract on top (SECRET_KEY, DEBUG, ALLOWED_HOSTS, DATABASES, static files,
HTTPS and proxies, the health endpoint). A missing or invalid variable stops startup with one line naming it.

For development, a ``.env`` file next to manage.py is read first (python-dotenv; real environment wins).
"""

from pathlib import Path

from djdeploy_django import env

BASE_DIR = Path(__file__).resolve().parent.parent

try:  # development convenience; the image never contains a .env (.dockerignore)
    from dotenv import load_dotenv

    load_dotenv(BASE_DIR / ".env", override=False)
except ImportError:  # pragma: no cover
    pass

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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEST_ENDPOINTS = env.boolean("DJANGO_TEST_ENDPOINTS", False)
