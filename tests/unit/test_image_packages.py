"""A project's own image needs (deploy.image.buildargs): the exact build args from the IMAGE_* settings, every
validation error verbatim (raised before the engine is touched), the Dockerfile's layer order (packages before
requirements and code, each argument declared just before the step that uses it), and the same in `inv init`'s
rendered Dockerfile."""

import io
import re
from pathlib import Path

import pytest

from deploy.core.errors import ConfigError
from deploy.image import builder, buildargs
from deploy.init import detect, render
from deploy.local import localenv

from test_init import make_project

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
FULL = {"IMAGE_SYSTEM_PACKAGES": "libjpeg62-turbo, zlib1g libjpeg62-turbo",
        "IMAGE_BUILD_PACKAGES": "gcc python3-dev libjpeg-dev zlib1g-dev", "IMAGE_SOURCE_BUILDS": "mysqlclient Pillow",
        "IMAGE_ASSETS_PACKAGES": "nodejs npm", "IMAGE_ASSETS_SRC": "assets/web", "IMAGE_ASSETS_INSTALL": "npm ci",
        "IMAGE_ASSETS_BUILD": "npm run build && npm run css", "IMAGE_ASSETS_DIR": "shop/static/shop/dist"}


def problems(**settings):
    with pytest.raises(ConfigError) as info:
        buildargs.from_settings(settings)
    return info.value.problems


# --- build args ------------------------------------------------------------------------------------------------
def test_every_setting_becomes_its_build_arg():
    assert buildargs.from_settings(FULL) == {
        "DJDEPLOY_SYSTEM_PACKAGES": "libjpeg62-turbo zlib1g",
        "DJDEPLOY_BUILD_PACKAGES": "gcc python3-dev libjpeg-dev zlib1g-dev",
        "DJDEPLOY_SOURCE_BUILDS": "mysqlclient Pillow", "DJDEPLOY_ASSETS_PACKAGES": "nodejs npm",
        "DJDEPLOY_ASSETS_SRC": "assets/web", "DJDEPLOY_ASSETS_INSTALL": "npm ci",
        "DJDEPLOY_ASSETS_BUILD": "npm run build && npm run css", "DJDEPLOY_ASSETS_DIR": "shop/static/shop/dist"}


def test_the_defaults_pass_nothing_so_inv_build_shares_the_plain_docker_build_cache():
    assert buildargs.from_settings(dict(localenv.DEFAULTS)) == {}
    assert buildargs.from_settings({}) == {}
    p = builder.plan("v1", settings=dict(localenv.DEFAULTS))
    assert p["buildargs"] == {"APP_VERSION": "v1"}


def test_front_end_args_only_with_a_build_command_and_with_their_defaults():
    assert buildargs.from_settings({"IMAGE_ASSETS_BUILD": "npm run build", "IMAGE_ASSETS_DIR": "app/static/dist"}) == {
        "DJDEPLOY_ASSETS_PACKAGES": "nodejs npm", "DJDEPLOY_ASSETS_SRC": "frontend",
        "DJDEPLOY_ASSETS_BUILD": "npm run build", "DJDEPLOY_ASSETS_DIR": "app/static/dist"}
    assert buildargs.from_settings({"IMAGE_ASSETS_PACKAGES": "nodejs", "IMAGE_ASSETS_SRC": "web"}) == {}
    assert buildargs.from_settings({**FULL, "IMAGE_ASSETS_PACKAGES": "", "IMAGE_SOURCE_BUILDS": ""}) == {
        key: value for key, value in buildargs.from_settings(FULL).items()
        if key not in ("DJDEPLOY_ASSETS_PACKAGES", "DJDEPLOY_SOURCE_BUILDS")}


def test_plan_adds_them_next_to_the_version_and_extras():
    p = builder.plan("v2", settings={"APP_IMAGE": "shop", "IMAGE_EXTRAS": "s3", "IMAGE_SYSTEM_PACKAGES": "libpq5"})
    assert p["buildargs"] == {"APP_VERSION": "v2", "DJDEPLOY_EXTRAS": "s3", "DJDEPLOY_SYSTEM_PACKAGES": "libpq5"}


def test_defaults_are_the_toolkits_and_documented():
    for key, value in buildargs.DEFAULTS.items():
        assert localenv.DEFAULTS[key] == value, key
    assert localenv.load(ROOT, environ={"IMAGE_BUILD_PACKAGES": "gcc"})["IMAGE_BUILD_PACKAGES"] == "gcc"


# --- every error verbatim ----------------------------------------------------------------------------------------
def test_debian_names_are_checked_in_each_list():
    hint = "(lower-case letters, digits and + - . only, at least 2 characters); list package names separated by spaces"
    assert problems(IMAGE_SYSTEM_PACKAGES="libjpeg62-turbo libJPEG zlib1g;rm") == [
        f"IMAGE_SYSTEM_PACKAGES: 'libJPEG' is not a Debian package name {hint}, e.g. libjpeg62-turbo zlib1g",
        f"IMAGE_SYSTEM_PACKAGES: 'zlib1g;rm' is not a Debian package name {hint}, e.g. libjpeg62-turbo zlib1g"]
    assert problems(IMAGE_BUILD_PACKAGES="g gcc=14 $(id)") == [
        f"IMAGE_BUILD_PACKAGES: {n!r} is not a Debian package name {hint}, e.g. gcc python3-dev libjpeg-dev zlib1g-dev"
        for n in ("g", "gcc=14", "$(id)")]
    assert problems(IMAGE_ASSETS_BUILD="npm run build", IMAGE_ASSETS_DIR="d", IMAGE_ASSETS_PACKAGES="nodejs -y") == [
        f"IMAGE_ASSETS_PACKAGES: '-y' is not a Debian package name {hint}, e.g. nodejs npm"]


def test_debian_names_that_are_valid():
    names = "libjpeg62-turbo zlib1g libstdc++6 python3.13 g++ 0ad"
    assert buildargs.from_settings({"IMAGE_SYSTEM_PACKAGES": names}) == {"DJDEPLOY_SYSTEM_PACKAGES": names}


def test_source_builds_name_packages():
    assert problems(IMAGE_SOURCE_BUILDS=":all: ok-name -bad") == [
        f"IMAGE_SOURCE_BUILDS: {n!r} is not a Python package name; name each package pip may build from source, "
        "separated by spaces, e.g. mysqlclient" for n in (":all:", "-bad")]


def test_front_end_settings_without_a_build_command():
    assert problems(IMAGE_ASSETS_INSTALL="npm ci", IMAGE_ASSETS_DIR="dist") == [
        "IMAGE_ASSETS_INSTALL is set but IMAGE_ASSETS_BUILD is empty; set the build command (e.g. npm run build) or "
        "clear IMAGE_ASSETS_INSTALL",
        "IMAGE_ASSETS_DIR is set but IMAGE_ASSETS_BUILD is empty; set the build command (e.g. npm run build) or "
        "clear IMAGE_ASSETS_DIR"]


def test_a_build_command_needs_its_output_directory():
    assert problems(IMAGE_ASSETS_BUILD="npm run build") == [
        "IMAGE_ASSETS_DIR: empty; name the directory the build writes, relative to the directory of manage.py "
        "(e.g. myapp/static/myapp/dist)"]


@pytest.mark.parametrize("key,value,example", [
    ("IMAGE_ASSETS_SRC", "../web", "frontend"), ("IMAGE_ASSETS_SRC", "/src", "frontend"),
    ("IMAGE_ASSETS_SRC", ".", "frontend"), ("IMAGE_ASSETS_SRC", "", "frontend"),
    ("IMAGE_ASSETS_SRC", "web app", "frontend"), ("IMAGE_ASSETS_DIR", "static/../..", "myapp/static/myapp/dist"),
    ("IMAGE_ASSETS_DIR", "dist/", "myapp/static/myapp/dist"), ("IMAGE_ASSETS_DIR", "$HOME", "myapp/static/myapp/dist")])
def test_directories_stay_below_the_project(key, value, example):
    settings = {"IMAGE_ASSETS_BUILD": "npm run build", "IMAGE_ASSETS_DIR": "dist", key: value}
    assert problems(**settings) == [
        f"{key}={value}: not a directory below the project; give a relative path of letters, digits and ._- parts "
        f"separated by /, without . or .. (e.g. {example})"]


def test_commands_are_one_line():
    assert problems(IMAGE_ASSETS_BUILD="npm run build\nrm -rf /", IMAGE_ASSETS_INSTALL="npm ci\r",
                    IMAGE_ASSETS_DIR="dist") == ["IMAGE_ASSETS_INSTALL: one line only; join the commands with &&",
                                                 "IMAGE_ASSETS_BUILD: one line only; join the commands with &&"]


def test_a_bad_setting_stops_the_build_before_the_engine(monkeypatch):
    def no_engine(**kw):
        raise AssertionError("the engine was contacted")

    monkeypatch.setattr("deploy.core.engine.client", no_engine)
    monkeypatch.setattr(builder.localenv, "load", lambda: {"APP_IMAGE": "djapp", "IMAGE_SYSTEM_PACKAGES": "Bad"})
    with pytest.raises(ConfigError) as info:
        builder.build(tag="t", out=io.StringIO())
    assert str(info.value).splitlines()[1].startswith("  - IMAGE_SYSTEM_PACKAGES: 'Bad' is not a Debian package name")


# --- the Dockerfile ----------------------------------------------------------------------------------------------
def stage(text, name):
    """The instructions of one stage (continuation lines joined), comments dropped."""
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    body = next(s for s in stages if s.splitlines()[0] == name)
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in body.splitlines()[1:] if not line.startswith("#")))
    return [line for line in joined.splitlines() if line.strip()]


def index(lines, start):
    hits = [n for n, line in enumerate(lines) if line.startswith(start)]
    assert len(hits) == 1, (start, hits)
    return hits[0]


def check_layers(text, app="project/"):
    builder_stage = stage(text, "debian:trixie-slim AS builder")
    b = [index(builder_stage, s) for s in ("ARG DJDEPLOY_BUILD_PACKAGES", 'RUN if [ -n "$DJDEPLOY_BUILD_PACKAGES" ]',
                                            "COPY djdeploy_django/requirements", "ARG DJDEPLOY_SOURCE_BUILDS",
                                            'RUN if [ -f /tmp/build/build-ca.pem ]')]
    assert b == sorted(b) and b[1] == b[0] + 1 and b[4] == b[3] + 1
    requirements = [n for n, line in enumerate(builder_stage)
                    if line.startswith("COPY ") and line.endswith(" /tmp/build/")]
    assert len(requirements) == 1 and b[2] < requirements[0] == b[3] - 1   # the project's requirements, then the arg
    final = stage(text, "debian:trixie-slim")
    f = [index(final, s) for s in ("ARG DJDEPLOY_SYSTEM_PACKAGES", 'RUN if [ -n "$DJDEPLOY_SYSTEM_PACKAGES" ]',
                                   "COPY --from=builder /opt/venv", f"COPY {app} /app/", "ARG DJDEPLOY_ASSETS_DIR",
                                   "COPY --from=assets /out/ /app/${DJDEPLOY_ASSETS_DIR}/", "RUN DJANGO_SECRET_KEY=")]
    assert f == sorted(f) and f[1] == f[0] + 1 and f[5] == f[4] + 1 == f[3] + 2
    assert "DJDEPLOY_BUILD_PACKAGES" not in "\n".join(final) and "npm" not in "\n".join(final)
    assets = stage(text, "debian:trixie-slim AS assets")
    prefix = "" if app == "./" else app
    a = [index(assets, s) for s in (
        "ARG DJDEPLOY_ASSETS_PACKAGES", 'RUN if [ -n "$DJDEPLOY_ASSETS_PACKAGES" ]', "ARG DJDEPLOY_ASSETS_SRC=frontend",
        "WORKDIR /src/${DJDEPLOY_ASSETS_SRC}",
        f"COPY {prefix}manage.py {prefix}${{DJDEPLOY_ASSETS_SRC}}/package*.json build-ca.pem* ./",
        'ARG DJDEPLOY_ASSETS_INSTALL=""', "RUN rm manage.py && if [ -n \"$DJDEPLOY_ASSETS_INSTALL\" ]",
        f"COPY {prefix}manage.py {prefix}${{DJDEPLOY_ASSETS_SRC}}* ./", 'ARG DJDEPLOY_ASSETS_BUILD=""',
        'ARG DJDEPLOY_ASSETS_DIR=""', "RUN rm manage.py && mkdir /out && if [ -n \"$DJDEPLOY_ASSETS_BUILD\" ]")]
    assert a == sorted(a)
    assert a[1] == a[0] + 1 and a[6] == a[5] + 1 and a[10] == a[9] + 1


def test_dockerfile_layers_packages_before_requirements_and_code():
    check_layers(DOCKERFILE)
    froms = re.findall(r"^FROM (.*)$", DOCKERFILE, flags=re.M)
    assert froms == ["debian:trixie-slim AS assets", "debian:trixie-slim AS builder", "debian:trixie-slim"]


def test_dockerfile_declares_exactly_the_args_the_builder_passes():
    declared = set(re.findall(r"^ARG ([A-Z_]+)=", DOCKERFILE, flags=re.M))
    assert declared == {"APP_VERSION", "DJDEPLOY_EXTRAS", *buildargs.ARGS}
    assert set(buildargs.from_settings(FULL)) == set(buildargs.ARGS)
    for arg in buildargs.ARGS:   # every default is empty but the front-end directory (the Dockerfile's and ours)
        default = re.findall(rf"^ARG {arg}=(.*)$", DOCKERFILE, flags=re.M)
        assert set(default) == ({"frontend"} if arg == "DJDEPLOY_ASSETS_SRC" else {'""'}), arg
    assert buildargs.DEFAULTS["IMAGE_ASSETS_SRC"] == "frontend"


def test_package_lists_are_installed_unquoted_only_after_validation():
    for arg in ("DJDEPLOY_SYSTEM_PACKAGES", "DJDEPLOY_BUILD_PACKAGES", "DJDEPLOY_ASSETS_PACKAGES"):
        assert f"apt-get install -y --no-install-recommends ${arg} " in DOCKERFILE.replace("\\\n", " "), arg
    assert 'set -- "$@" "--no-binary=$name"' in DOCKERFILE and '--only-binary=:all: "$@"' in DOCKERFILE


def test_the_front_end_stays_out_of_the_context_and_the_image():
    assert "project/**/node_modules" in (ROOT / ".dockerignore").read_text().splitlines()
    assert "**/node_modules" in (ROOT / "deploy/templates/dockerignore").read_text().splitlines()


@pytest.mark.parametrize("subdir", [False, True])
def test_the_rendered_init_dockerfile_keeps_every_feature(tmp_path, subdir):
    root = tmp_path / "repo"
    make_project(root / "src" if subdir else root)
    if subdir:
        (root / "requirements.txt").write_text("django==5.2.19\n")
    p = detect.detect(root)
    text = render.render(p)["Dockerfile"][0]
    assert "project/" not in text
    check_layers(text, app="src/" if subdir else "./")
    assert re.findall(r"^ARG ([A-Z_]+)=(.*)$", text, flags=re.M) == re.findall(r"^ARG ([A-Z_]+)=(.*)$", DOCKERFILE,
                                                                              flags=re.M)


def test_a_deploy_that_builds_checks_them_before_the_registry_and_the_manager(monkeypatch, tmp_path):
    from shipfakes import make_cfg

    from deploy.ship import executor, registry

    def contacted(*a, **k):
        raise AssertionError("the registry was contacted")

    monkeypatch.setattr(registry, "check", contacted)
    monkeypatch.setattr(executor, "git_tag", lambda: "abc1234")
    monkeypatch.setattr(localenv, "load", lambda *a, **k: {"IMAGE_BUILD_PACKAGES": "GCC"})
    with pytest.raises(ConfigError) as info:
        executor.deploy(make_cfg(tmp_path), tag="v2", out=io.StringIO(), remote=contacted)
    assert info.value.problems[0].startswith("IMAGE_BUILD_PACKAGES: 'GCC' is not a Debian package name")
