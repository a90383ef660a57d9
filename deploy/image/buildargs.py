"""The image's project-specific build arguments, from the IMAGE_* settings of .env, validated before any build.

- IMAGE_SYSTEM_PACKAGES (DJDEPLOY_SYSTEM_PACKAGES): Debian packages the app needs at run time, final stage only;
- IMAGE_BUILD_PACKAGES (DJDEPLOY_BUILD_PACKAGES): Debian packages for building wheels, builder stage only;
- IMAGE_SOURCE_BUILDS (DJDEPLOY_SOURCE_BUILDS): the Python packages pip may build from their sdist (every other
  package must come as a wheel: a missing wheel stays an error instead of a silent compile);
- IMAGE_ASSETS_* (DJDEPLOY_ASSETS_*): the front-end build stage: its Debian packages, its directory, its install
  and build commands, and the directory its output lands in (all relative to the directory holding manage.py).

Only non-empty values are passed, and the assets' only when IMAGE_ASSETS_BUILD is set: without them the build
is the plain `docker build .` one (same cache). Package names are checked against Debian's and PyPI's rules,
which also keeps them from reaching the Dockerfile's shell as anything but words.
"""

from __future__ import annotations

import re

from deploy.core.errors import ConfigError

DEBIAN_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+\Z")                       # Debian Policy 5.6.1
PYTHON_NAME = re.compile(r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])\Z")  # PEP 508 names
DIR_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\Z")
DEBIAN_LISTS = (("IMAGE_SYSTEM_PACKAGES", "DJDEPLOY_SYSTEM_PACKAGES", "libjpeg62-turbo zlib1g"),
                ("IMAGE_BUILD_PACKAGES", "DJDEPLOY_BUILD_PACKAGES", "gcc python3-dev libjpeg-dev zlib1g-dev"))
ASSETS = {"IMAGE_ASSETS_PACKAGES": "DJDEPLOY_ASSETS_PACKAGES", "IMAGE_ASSETS_SRC": "DJDEPLOY_ASSETS_SRC",
          "IMAGE_ASSETS_INSTALL": "DJDEPLOY_ASSETS_INSTALL", "IMAGE_ASSETS_BUILD": "DJDEPLOY_ASSETS_BUILD",
          "IMAGE_ASSETS_DIR": "DJDEPLOY_ASSETS_DIR"}
ARGS = tuple(arg for _, arg, _ in DEBIAN_LISTS) + ("DJDEPLOY_SOURCE_BUILDS",) + tuple(ASSETS.values())
DEFAULTS = {                       # deploy.local.localenv.DEFAULTS carries these (.env.example documents them)
    "IMAGE_SYSTEM_PACKAGES": "",   # runtime Debian packages (final stage)
    "IMAGE_BUILD_PACKAGES": "",    # build-time Debian packages (builder stage only)
    "IMAGE_SOURCE_BUILDS": "",     # Python packages pip may build from source
    "IMAGE_ASSETS_PACKAGES": "nodejs npm",  # the front-end stage's Debian packages (used with IMAGE_ASSETS_BUILD)
    "IMAGE_ASSETS_SRC": "frontend",         # the front-end's directory (package*.json, sources)
    "IMAGE_ASSETS_INSTALL": "",    # run after only the manifests are copied, e.g. npm ci
    "IMAGE_ASSETS_BUILD": "",      # run after the sources are copied, e.g. npm run build; empty: no front-end build
    "IMAGE_ASSETS_DIR": "",        # what the build writes, copied into the image before collectstatic
}


def words(value: str) -> list[str]:
    """A list setting: names separated by spaces or commas, duplicates dropped, order kept."""
    return list(dict.fromkeys(value.replace(",", " ").split()))


def debian_problems(key: str, names: list[str], example: str) -> list[str]:
    return [f"{key}: {name!r} is not a Debian package name (lower-case letters, digits and + - . only, at least "
            f"2 characters); list package names separated by spaces, e.g. {example}"
            for name in names if not DEBIAN_NAME.match(name)]


def source_problems(names: list[str]) -> list[str]:
    return [f"IMAGE_SOURCE_BUILDS: {name!r} is not a Python package name; name each package pip may build from "
            "source, separated by spaces, e.g. mysqlclient" for name in names if not PYTHON_NAME.match(name)]


def dir_problem(key: str, value: str, example: str) -> str | None:
    parts = value.split("/")
    if all(DIR_PART.match(p) and p.strip(".") for p in parts):
        return None
    return (f"{key}={value}: not a directory below the project; give a relative path of letters, digits and ._- "
            f"parts separated by /, without . or .. (e.g. {example})")


def assets_problems(s: dict) -> list[str]:
    build = s.get("IMAGE_ASSETS_BUILD", "").strip()
    if not build:
        return [f"{key} is set but IMAGE_ASSETS_BUILD is empty; set the build command (e.g. npm run build) or "
                f"clear {key}" for key in ("IMAGE_ASSETS_INSTALL", "IMAGE_ASSETS_DIR") if s.get(key, "").strip()]
    problems = debian_problems("IMAGE_ASSETS_PACKAGES", words(s.get("IMAGE_ASSETS_PACKAGES", "")), "nodejs npm")
    for key in ("IMAGE_ASSETS_INSTALL", "IMAGE_ASSETS_BUILD"):
        if "\n" in s.get(key, "") or "\r" in s.get(key, ""):
            problems.append(f"{key}: one line only; join the commands with &&")
    if not s.get("IMAGE_ASSETS_DIR", "").strip():
        problems.append("IMAGE_ASSETS_DIR: empty; name the directory the build writes, relative to the directory "
                        "of manage.py (e.g. myapp/static/myapp/dist)")
    for key, example in (("IMAGE_ASSETS_SRC", "frontend"), ("IMAGE_ASSETS_DIR", "myapp/static/myapp/dist")):
        value = s.get(key, "").strip()
        problem = dir_problem(key, value, example) if value or key == "IMAGE_ASSETS_SRC" else None
        problems += [problem] if problem else []
    return problems


def from_settings(settings: dict) -> dict[str, str]:
    """The build arguments of the IMAGE_* settings (only non-empty ones), or a ConfigError naming every problem."""
    settings = {**DEFAULTS, **settings}
    problems, args = [], {}
    for key, arg, example in DEBIAN_LISTS:
        names = words(settings.get(key, ""))
        problems += debian_problems(key, names, example)
        if names:
            args[arg] = " ".join(names)
    sources = words(settings.get("IMAGE_SOURCE_BUILDS", ""))
    problems += source_problems(sources)
    if sources:
        args["DJDEPLOY_SOURCE_BUILDS"] = " ".join(sources)
    problems += assets_problems(settings)
    if problems:
        raise ConfigError(problems)
    if settings.get("IMAGE_ASSETS_BUILD", "").strip():
        for key, arg in ASSETS.items():
            value = settings[key].strip()
            value = " ".join(words(value)) if key == "IMAGE_ASSETS_PACKAGES" else value
            if value:
                args[arg] = value
    return args
