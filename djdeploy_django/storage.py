"""Uploads (Django MEDIA) from the environment: an S3-compatible object store, or a directory (a named volume).

- ``AWS_STORAGE_BUCKET_NAME`` set: ``STORAGES["default"]`` is django-storages' S3 backend (the image needs
  IMAGE_EXTRAS=s3). Credentials ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` are secrets (each also as
  ``<NAME>_FILE``: an app secret of the deploy environment); optional ``AWS_S3_ENDPOINT_URL`` (a non-AWS store),
  ``AWS_S3_REGION_NAME``, ``AWS_S3_ADDRESSING_STYLE`` (path for most S3-compatible servers),
  ``AWS_S3_CUSTOM_DOMAIN`` (a CDN or public host; then URLs are not signed). Every replica on every node sees
  the same files, and deploys, rollbacks and the loss of a node do not touch them.
- ``DJANGO_MEDIA_ROOT`` set: files in that directory (on one node, a named volume shared by the replicas; the
  read-only root filesystem needs that mount to be writable). ``DJANGO_MEDIA_URL`` (default ``/media/``).
- neither: the project's own settings stay (Django's default: MEDIA_ROOT '' , i.e. nowhere that survives).

No value is ever put in an error: they name the variable.
"""

from __future__ import annotations

import importlib.util

from djdeploy_django import env
from djdeploy_django.env import EnvError

S3_BACKEND = "storages.backends.s3.S3Storage"
FILES_BACKEND = "django.core.files.storage.FileSystemStorage"
STYLES = ("auto", "path", "virtual")


def s3_options(environ) -> dict:
    """django-storages S3Storage OPTIONS from the environment."""
    options = {"bucket_name": environ["AWS_STORAGE_BUCKET_NAME"].strip(),
               "access_key": env.secret("AWS_ACCESS_KEY_ID", environ),
               "secret_key": env.secret("AWS_SECRET_ACCESS_KEY", environ),
               "file_overwrite": False,           # two uploads of one name never replace each other
               "default_acl": None}               # the bucket's policy decides (most stores refuse ACLs)
    for name, option in (("AWS_S3_ENDPOINT_URL", "endpoint_url"), ("AWS_S3_REGION_NAME", "region_name"),
                         ("AWS_S3_CUSTOM_DOMAIN", "custom_domain"), ("AWS_LOCATION", "location")):
        value = environ.get(name, "").strip()
        if value:
            options[option] = value
    style = environ.get("AWS_S3_ADDRESSING_STYLE", "").strip()
    if style:
        if style not in STYLES:
            raise EnvError(f"AWS_S3_ADDRESSING_STYLE must be one of {', '.join(STYLES)}")
        options["addressing_style"] = style
    endpoint = options.get("endpoint_url", "")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise EnvError("AWS_S3_ENDPOINT_URL must start with http:// or https://")
    options["querystring_auth"] = env.boolean("AWS_QUERYSTRING_AUTH", "custom_domain" not in options, environ)
    return options


def apply(ns: dict, environ) -> None:
    """Point STORAGES["default"] (uploads) at S3 or a directory when the environment says so."""
    bucket = environ.get("AWS_STORAGE_BUCKET_NAME", "").strip()
    root = environ.get("DJANGO_MEDIA_ROOT", "").strip()
    if bucket and root:
        raise EnvError("AWS_STORAGE_BUCKET_NAME and DJANGO_MEDIA_ROOT are both set; uploads go to one place: "
                       "unset one of them")
    storages = dict(ns.get("STORAGES") or {})
    if bucket:
        if importlib.util.find_spec("storages") is None:
            raise EnvError("AWS_STORAGE_BUCKET_NAME is set but django-storages is not installed; build the image "
                           "with IMAGE_EXTRAS=s3 (djdeploy_django/requirements-s3.lock)")
        storages["default"] = {"BACKEND": S3_BACKEND, "OPTIONS": s3_options(environ)}
    elif root:
        if not root.startswith("/"):
            raise EnvError("DJANGO_MEDIA_ROOT must be an absolute path (a mounted volume, e.g. /app/media)")
        ns["MEDIA_ROOT"] = root
        ns["MEDIA_URL"] = environ.get("DJANGO_MEDIA_URL", "").strip() or "/media/"
        storages["default"] = {"BACKEND": FILES_BACKEND}
    else:
        return
    ns["STORAGES"] = storages
