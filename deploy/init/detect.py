"""What an existing Django project is, read from its files with ``ast`` (the user's code is never imported).

Every problem is a one-line ToolkitError naming the file and what to do; nothing is written before detection
succeeds.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from deploy.core.errors import ToolkitError

LOCKS_ELSEWHERE = {"poetry.lock": "poetry export -f requirements.txt -o requirements.txt",
                   "Pipfile.lock": "pipenv requirements > requirements.txt",
                   "uv.lock": "uv export --format requirements-txt -o requirements.txt"}
REQUIREMENT_FILES = ("requirements.lock", "requirements.txt")


@dataclass(frozen=True)
class Project:
    root: Path                 # the directory init prepares (the build context)
    app_dir: str               # where manage.py is, relative to root ("" = root itself)
    settings: str              # the project's own settings module, e.g. "mysite.settings"
    wsgi: str                  # its WSGI_APPLICATION, e.g. "mysite.wsgi.application"
    requirements: str          # the requirements source, relative to root
    hashed: bool               # the requirements file pins hashes (pip --require-hashes)
    admin_prefix: str | None   # the URL prefix of django.contrib.admin ("admin/"), None without it
    slug: str                  # short name: image repository, compose project, database (e.g. "mysite")
    smoke_text: str = ""       # a text `inv smoke` expects on its page (SMOKE_TEXT)

    @property
    def smoke_path(self) -> str:
        """The page `inv smoke` fetches: the admin's login form (it links hashed static files), else /."""
        return f"/{self.admin_prefix}login/" if self.admin_prefix is not None else "/"


def slug_for(settings: str) -> str:
    """The settings package's name, lowercased, letters/digits/underscore only (``MySite.settings`` -> mysite)."""
    return re.sub(r"[^a-z0-9_]", "", settings.split(".")[0].lower()).lstrip("_") or "app"


def find_manage(root: Path) -> Path:
    if not root.is_dir():
        raise ToolkitError(f"{root} is not a directory; give the path of a Django project")
    if (root / "manage.py").is_file():
        return root / "manage.py"
    below = sorted(p for p in root.glob("*/manage.py") if p.is_file())
    if len(below) == 1:
        return below[0]
    raise ToolkitError(f"{root} is not a Django project: no manage.py in it or in one of its subdirectories; "
                       "run init on the directory that holds manage.py (or create one: django-admin startproject NAME DIR)")


def parse(path: Path, what: str) -> ast.Module:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise ToolkitError(f"cannot parse {what} {path} (line {exc.lineno}: {exc.msg}); fix it and rerun init") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ToolkitError(f"cannot read {what} {path} ({exc}); fix it and rerun init") from None


def settings_from_manage(manage: Path) -> str:
    """The default of ``os.environ.setdefault("DJANGO_SETTINGS_MODULE", "...")`` in manage.py."""
    for node in ast.walk(parse(manage, "manage.py")):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setdefault"
                and len(node.args) == 2 and all(isinstance(a, ast.Constant) for a in node.args)
                and node.args[0].value == "DJANGO_SETTINGS_MODULE" and isinstance(node.args[1].value, str)):
            return node.args[1].value
    raise ToolkitError(f"{manage} does not set DJANGO_SETTINGS_MODULE (os.environ.setdefault(...)); "
                       "run init on a project made by django-admin startproject, or add that line")


def module_file(app: Path, module: str) -> Path | None:
    base = app.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def prefer_production(app: Path, module: str) -> str:
    """``x.settings.dev`` (Wagtail's and cookiecutter's manage.py default) -> ``x.settings.production`` if present."""
    package, _, leaf = module.rpartition(".")
    if leaf in ("dev", "development", "local") and package:
        for name in ("production", "prod"):
            if module_file(app, f"{package}.{name}"):
                return f"{package}.{name}"
    return module


def _star_import(node, module: str) -> str | None:
    if not (isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)):
        return None
    if node.level == 0:
        return node.module
    parts = module.split(".")[: -node.level]
    return ".".join(parts + ([node.module] if node.module else []))


def assignments(app: Path, module: str, seen: frozenset = frozenset()) -> dict:
    """Top-level ``NAME = <literal>`` of a settings module, following its ``from .base import *`` lines."""
    path = module_file(app, module)
    if path is None or module in seen:
        return {}
    found: dict = {}
    for node in parse(path, "the settings module").body:
        star = _star_import(node, module)
        if star:
            found.update(assignments(app, star, seen | {module}))
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError):
                found[node.targets[0].id] = None  # not a literal: known to be set, value unknown
    return found


def admin_prefix(app: Path, urlconf: str | None) -> str | None:
    """The prefix of ``path("<prefix>", admin.site.urls)`` in the root URLconf, if any."""
    path = module_file(app, urlconf) if urlconf else None
    if path is None:
        return None
    for node in ast.walk(parse(path, "the URLconf")):
        if (isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str) and ast.unparse(node.args[1]) == "admin.site.urls"):
            return node.args[0].value
    return None


def requirements(root: Path, app: Path) -> tuple[str, bool]:
    """The requirements source (relative to root) and whether it pins hashes."""
    for directory in dict.fromkeys((root, app)):
        for name in REQUIREMENT_FILES:
            path = directory / name
            if path.is_file():
                return path.relative_to(root).as_posix(), "--hash=" in path.read_text(encoding="utf-8", errors="replace")
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            deps = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("dependencies")
        except tomllib.TOMLDecodeError as exc:
            raise ToolkitError(f"cannot parse {pyproject} ({exc}); fix it and rerun init") from None
        if deps:
            return "pyproject.toml", False
    for lock, command in LOCKS_ELSEWHERE.items():
        if (root / lock).is_file():
            raise ToolkitError(f"{root / lock} is not a format the image installs; export it ({command}) and rerun init")
    raise ToolkitError(f"no requirements in {root}: add a requirements.txt (with Django in it), a requirements.lock, "
                       "or a pyproject.toml with [project] dependencies, and rerun init")


def detect(root: Path) -> Project:
    """Read the project at ``root``; raise ToolkitError (one line) when it is not a usable Django project."""
    root = root.resolve()
    manage = find_manage(root)
    app = manage.parent
    named = settings_from_manage(manage)
    if module_file(app, named) is None:
        raise ToolkitError(f"{manage} names the settings module {named}, which has no file under {app}; "
                           "fix DJANGO_SETTINGS_MODULE in manage.py")
    settings = prefer_production(app, named)
    values = assignments(app, settings)
    wsgi = values.get("WSGI_APPLICATION")
    if not isinstance(wsgi, str) or module_file(app, wsgi.rpartition(".")[0]) is None:
        raise ToolkitError(f"the settings module {settings} names no WSGI module that exists "
                           "(WSGI_APPLICATION = \"<package>.wsgi.application\"); add it and rerun init")
    reqs, hashed = requirements(root, app)
    apps = values.get("INSTALLED_APPS") or ()
    prefix = admin_prefix(app, values.get("ROOT_URLCONF")) if "django.contrib.admin" in apps else None
    return Project(root=root, app_dir=app.relative_to(root).as_posix().strip("."), settings=settings, wsgi=wsgi,
                   requirements=reqs, hashed=hashed, admin_prefix=prefix, slug=slug_for(settings))
