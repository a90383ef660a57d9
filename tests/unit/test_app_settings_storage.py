"""djdeploy_django.storage: uploads (Django MEDIA) on S3 (django-storages) or a directory, from the environment;
credentials as secrets (NAME or NAME_FILE); every error names the variable, never a value. The image's build
args for the optional S3 lock (IMAGE_EXTRAS)."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from djdeploy_django import contract, storage  # noqa: E402
from djdeploy_django.env import EnvError  # noqa: E402

KEY = "k" * 40 + "abcdefghij1234567890"
BASE = {"DJANGO_SECRET_KEY": KEY, "DJANGO_ALLOWED_HOSTS": "localhost", "DATABASE_URL": ""}
S3 = {"AWS_STORAGE_BUCKET_NAME": "media", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_S3_ENDPOINT_URL": "http://s3:5000",
      "AWS_S3_ADDRESSING_STYLE": "path", "AWS_S3_REGION_NAME": "us-east-1"}


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(storage.importlib.util, "find_spec", lambda name: object() if name == "storages" else None)


def test_a_bucket_switches_uploads_to_s3_with_the_secret_read_from_its_file(tmp_path, installed):
    (tmp_path / "secret").write_text("s3-secret-value\n")
    ns = contract.apply({}, {**BASE, **S3, "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret")})
    assert ns["STORAGES"]["default"] == {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": "media", "access_key": "AKIDEXAMPLE", "secret_key": "s3-secret-value", "file_overwrite": False,
        "default_acl": None, "endpoint_url": "http://s3:5000", "region_name": "us-east-1",
        "addressing_style": "path", "querystring_auth": True}}
    assert ns["STORAGES"]["staticfiles"]["BACKEND"].endswith("ManifestStaticFilesStorage")


def test_a_custom_domain_means_unsigned_urls(installed):
    env = {**BASE, **S3, "AWS_SECRET_ACCESS_KEY": "x", "AWS_S3_CUSTOM_DOMAIN": "cdn.example.com"}
    options = contract.apply({}, env)["STORAGES"]["default"]["OPTIONS"]
    assert options["custom_domain"] == "cdn.example.com" and options["querystring_auth"] is False


@pytest.mark.parametrize("extra, message", [
    ({}, "AWS_SECRET_ACCESS_KEY is not set; set it (or AWS_SECRET_ACCESS_KEY_FILE) in the environment"),
    ({"AWS_SECRET_ACCESS_KEY_FILE": "/nonexistent/s3"},
     "AWS_SECRET_ACCESS_KEY_FILE names a file that cannot be read (No such file or directory); mount the secret file"),
    ({"AWS_SECRET_ACCESS_KEY": "x", "AWS_S3_ADDRESSING_STYLE": "dns"},
     "AWS_S3_ADDRESSING_STYLE must be one of auto, path, virtual"),
    ({"AWS_SECRET_ACCESS_KEY": "x", "AWS_S3_ENDPOINT_URL": "s3:5000"},
     "AWS_S3_ENDPOINT_URL must start with http:// or https://"),
    ({"AWS_SECRET_ACCESS_KEY": "x", "DJANGO_MEDIA_ROOT": "/app/media"},
     "AWS_STORAGE_BUCKET_NAME and DJANGO_MEDIA_ROOT are both set; uploads go to one place: unset one of them"),
])
def test_s3_errors_name_the_variable(installed, extra, message):
    with pytest.raises(EnvError) as err:
        contract.apply({}, {**BASE, **S3, **extra})
    assert str(err.value) == message


def test_a_bucket_without_django_storages_says_how_to_build_the_image(monkeypatch):
    monkeypatch.setattr(storage.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EnvError) as err:
        contract.apply({}, {**BASE, **S3, "AWS_SECRET_ACCESS_KEY": "x"})
    assert str(err.value) == ("AWS_STORAGE_BUCKET_NAME is set but django-storages is not installed; build the image "
                              "with IMAGE_EXTRAS=s3 (djdeploy_django/requirements-s3.lock)")


def test_a_media_root_keeps_uploads_in_that_directory():
    ns = contract.apply({}, {**BASE, "DJANGO_MEDIA_ROOT": "/app/media"})
    assert (ns["MEDIA_ROOT"], ns["MEDIA_URL"]) == ("/app/media", "/media/")
    assert ns["STORAGES"]["default"] == {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    with pytest.raises(EnvError) as err:
        contract.apply({}, {**BASE, "DJANGO_MEDIA_ROOT": "media"})
    assert str(err.value) == "DJANGO_MEDIA_ROOT must be an absolute path (a mounted volume, e.g. /app/media)"


def test_nothing_configured_keeps_the_projects_own_storage():
    ns = contract.apply({"STORAGES": {"default": {"BACKEND": "my.Storage"}}}, dict(BASE))
    assert ns["STORAGES"]["default"] == {"BACKEND": "my.Storage"} and "MEDIA_ROOT" not in ns


def test_image_extras_become_a_build_arg_and_unknown_ones_are_refused():
    from deploy.core.errors import ConfigError
    from deploy.image import builder

    settings = {"APP_IMAGE": "djapp", "IMAGE_EXTRAS": "s3"}
    assert builder.plan("v1", settings=settings)["buildargs"] == {"APP_VERSION": "v1", "DJDEPLOY_EXTRAS": "s3"}
    assert builder.plan("v1", settings={"APP_IMAGE": "djapp", "IMAGE_EXTRAS": ""})["buildargs"] == {"APP_VERSION": "v1"}
    with pytest.raises(ConfigError) as err:
        builder.plan("v1", settings={"APP_IMAGE": "djapp", "IMAGE_EXTRAS": "s3 redis"})
    assert err.value.problems == ["IMAGE_EXTRAS: unknown extra 'redis'; known: s3"]


def test_every_extra_has_its_lock_with_hashes_and_the_dockerfile_installs_it():
    from deploy.image import builder

    for extra in builder.EXTRAS:
        lock = (REPO / "djdeploy_django" / f"requirements-{extra}.lock").read_text()
        pins = [line for line in lock.splitlines() if "==" in line]
        assert pins and lock.count("--hash=sha256:") == len(pins)
    assert "django-storages==1.14." in (REPO / "djdeploy_django" / "requirements-s3.lock").read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    assert '--only-binary=:all: --no-deps -r "/tmp/contract/requirements-$extra.lock"' in dockerfile
