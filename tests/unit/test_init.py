"""`inv init`: detection (ast only), every error verbatim, the rendered files (the repository's own, byte for byte,
for the bundled project), the write/skip listing, idempotence, and that nothing is written on bad input."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Exit

from deploy.core.errors import ToolkitError
from deploy.init import detect, render, write
from deploy.tasks import init as init_tasks

ROOT = Path(__file__).resolve().parents[2]
MANAGE = '''import os, sys
def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
'''
SETTINGS = '''from pathlib import Path
BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "django-insecure-abc"
INSTALLED_APPS = ["django.contrib.admin", "django.contrib.auth"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
'''
URLS = 'from django.contrib import admin\nfrom django.urls import path\nurlpatterns = [path("admin/", admin.site.urls)]\n'


def make_project(root: Path, settings="mysite.settings", requirements="django==5.2.19\n") -> Path:
    (root / "mysite").mkdir(parents=True)
    (root / "manage.py").write_text(MANAGE.format(settings=settings))
    for name, text in {"__init__.py": "", "settings.py": SETTINGS, "urls.py": URLS, "wsgi.py": "application = 1\n"}.items():
        (root / "mysite" / name).write_text(text)
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    return root


def message(fn, *args):
    with pytest.raises(ToolkitError) as info:
        fn(*args)
    return str(info.value)


def tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_init(path, capsys):
    init_tasks.init.body(None, path=str(path))
    return capsys.readouterr().out.splitlines()


# ---- detection --------------------------------------------------------------------------------------------
def test_detects_a_startproject_layout(tmp_path):
    p = detect.detect(make_project(tmp_path))
    assert (p.app_dir, p.settings, p.wsgi, p.requirements, p.hashed) == ("", "mysite.settings",
                                                                          "mysite.wsgi.application", "requirements.txt", False)
    assert (p.slug, p.admin_prefix, p.smoke_path) == ("mysite", "admin/", "/admin/login/")


def test_detects_the_real_django_admin_startproject(tmp_path):
    subprocess.run([sys.executable, "-m", "django", "startproject", "Shop_Site", str(tmp_path)], check=True)
    (tmp_path / "requirements.lock").write_text("django==5.2.19 \\\n    --hash=sha256:00\n")
    p = detect.detect(tmp_path)
    assert (p.settings, p.wsgi, p.slug, p.smoke_path, p.requirements, p.hashed) == (
        "Shop_Site.settings", "Shop_Site.wsgi.application", "shop_site", "/admin/login/", "requirements.lock", True)


def test_split_settings_prefer_production_and_follow_star_imports(tmp_path):
    make_project(tmp_path, settings="mysite.settings.dev")
    pkg = tmp_path / "mysite" / "settings"
    pkg.mkdir()
    (tmp_path / "mysite" / "settings.py").rename(pkg / "base.py")
    (pkg / "__init__.py").write_text("")
    (pkg / "dev.py").write_text("from .base import *\nDEBUG = True\n")
    (pkg / "production.py").write_text("from .base import *\nDEBUG = False\ntry:\n    from .local import *\nexcept ImportError:\n    pass\n")
    p = detect.detect(tmp_path)
    assert (p.settings, p.wsgi, p.admin_prefix) == ("mysite.settings.production", "mysite.wsgi.application", "admin/")


def test_manage_py_in_a_subdirectory_and_requirements_from_pyproject(tmp_path):
    make_project(tmp_path / "src", requirements=None)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\ndependencies = ["django>=5.2"]\n')
    p = detect.detect(tmp_path)
    assert (p.app_dir, p.requirements) == ("src", "pyproject.toml")
    files = render.render(p)
    dockerfile = files["Dockerfile"][0]
    assert "COPY src/ /app/" in dockerfile and "COPY pyproject.toml build-ca.pem* /tmp/build/" in dockerfile
    assert "tomllib.load(open(\"/tmp/build/pyproject.toml\", \"rb\"))" in dockerfile
    assert "-r /tmp/build/requirements.txt" in dockerfile
    assert files[".dockerignore"][0].count("src/") >= 2 and "project/" not in files[".dockerignore"][0]


def test_no_admin_means_smoke_on_the_root_page(tmp_path):
    make_project(tmp_path)
    (tmp_path / "mysite" / "settings.py").write_text(SETTINGS.replace('"django.contrib.admin", ', ""))
    assert detect.detect(tmp_path).smoke_path == "/"


# ---- bad input: one line, nothing written ------------------------------------------------------------------
def test_not_a_directory(tmp_path):
    assert message(detect.detect, tmp_path / "nope") == f"{tmp_path / 'nope'} is not a directory; give the path of a Django project"


def test_not_a_django_project(tmp_path):
    (tmp_path / "README.md").write_text("hello")
    assert message(detect.detect, tmp_path) == (
        f"{tmp_path} is not a Django project: no manage.py in it or in one of its subdirectories; run init on the "
        "directory that holds manage.py (or create one: django-admin startproject NAME DIR)")


def test_settings_module_that_cannot_be_parsed(tmp_path):
    make_project(tmp_path)
    (tmp_path / "mysite" / "settings.py").write_text("INSTALLED_APPS = [\n")
    assert message(detect.detect, tmp_path) == (
        f"cannot parse the settings module {tmp_path}/mysite/settings.py (line 1: '[' was never closed); "
        "fix it and rerun init")


def test_manage_py_errors(tmp_path):
    make_project(tmp_path)
    (tmp_path / "manage.py").write_text("import os\n")
    assert message(detect.detect, tmp_path) == (
        f"{tmp_path}/manage.py does not set DJANGO_SETTINGS_MODULE (os.environ.setdefault(...)); run init on a "
        "project made by django-admin startproject, or add that line")
    (tmp_path / "manage.py").write_text(MANAGE.format(settings="other.settings"))
    assert message(detect.detect, tmp_path) == (
        f"{tmp_path}/manage.py names the settings module other.settings, which has no file under {tmp_path}; "
        "fix DJANGO_SETTINGS_MODULE in manage.py")
    (tmp_path / "manage.py").write_text("def (:\n")
    assert message(detect.detect, tmp_path) == (
        f"cannot parse manage.py {tmp_path}/manage.py (line 1: invalid syntax); fix it and rerun init")


def test_missing_wsgi_module(tmp_path):
    make_project(tmp_path)
    (tmp_path / "mysite" / "wsgi.py").unlink()
    assert message(detect.detect, tmp_path) == (
        'the settings module mysite.settings names no WSGI module that exists '
        '(WSGI_APPLICATION = "<package>.wsgi.application"); add it and rerun init')


def test_requirements_errors(tmp_path):
    make_project(tmp_path, requirements=None)
    assert message(detect.detect, tmp_path) == (
        f"no requirements in {tmp_path}: add a requirements.txt (with Django in it), a requirements.lock, "
        "or a pyproject.toml with [project] dependencies, and rerun init")
    (tmp_path / "poetry.lock").write_text("")
    assert message(detect.detect, tmp_path) == (
        f"{tmp_path}/poetry.lock is not a format the image installs; export it "
        "(poetry export -f requirements.txt -o requirements.txt) and rerun init")
    (tmp_path / "pyproject.toml").write_text("[project\n")
    assert message(detect.detect, tmp_path).startswith(f"cannot parse {tmp_path}/pyproject.toml (")


@pytest.mark.parametrize("breakage", ["not-django", "unparseable"])
def test_init_task_on_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, breakage):
    if breakage == "not-django":
        (tmp_path / "app.py").write_text("print(1)\n")
    else:
        make_project(tmp_path)
        (tmp_path / "mysite" / "settings.py").write_text("SECRET_KEY = 'x\n")
    before = tree(tmp_path)
    with pytest.raises(Exit) as info:
        init_tasks.init.body(None, path=str(tmp_path))
    assert info.value.code == 1 and str(info.value.message).startswith("error: ")
    assert "\n" not in info.value.message
    assert tree(tmp_path) == before and capsys.readouterr().out == ""


# ---- rendering ---------------------------------------------------------------------------------------------
def test_the_bundled_project_renders_to_the_repositorys_own_files():
    files = render.render(render.BUNDLED)
    for rel in ("tasks.py", "Dockerfile", "docker-entrypoint.sh", "docker-compose.yml", ".env.example", ".dockerignore",
                "deploy/prod.env.example", "deploy/staging.env.example"):
        assert files[rel][0] == (ROOT / rel).read_text(), rel


def test_templates_are_links_to_the_repositorys_files():
    for name, target in [("Dockerfile", "Dockerfile"), ("docker-entrypoint.sh", "docker-entrypoint.sh"),
                         ("docker-compose.yml", "docker-compose.yml"), ("env.example", ".env.example"),
                         ("dockerignore.subdir", ".dockerignore"), ("tasks.py", "tasks.py")]:
        link = ROOT / "deploy" / "templates" / name
        assert link.is_symlink() and link.resolve() == (ROOT / target).resolve(), name


def test_rendered_files_for_a_startproject(tmp_path):
    files = render.render(detect.detect(make_project(tmp_path)))
    dockerfile = files["Dockerfile"][0]
    assert "COPY requirements.txt build-ca.pem* /tmp/build/" in dockerfile
    assert "        -r /tmp/build/requirements.txt" in dockerfile          # no --require-hashes: none pinned
    assert dockerfile.count("--require-hashes") == 1                       # the contract's own lock keeps them
    assert "DJDEPLOY_SETTINGS_MODULE=mysite.settings \\" in dockerfile and "COPY ./ /app/" in dockerfile
    assert "project/" not in dockerfile and "config.settings" not in dockerfile
    env = files[".env.example"][0]
    assert "\nAPP_IMAGE=mysite\n" in env and "\nCOMPOSE_PROJECT_NAME=mysite\n" in env and "djapp" not in env
    assert "\nSMOKE_PATH=/admin/login/\n" in env and "\nSMOKE_TEXT=\n" in env
    assert "${COMPOSE_PROJECT_NAME:-mysite}" in files["docker-compose.yml"][0]
    assert files[".dockerignore"][0] == (render.TEMPLATES / "dockerignore").read_text()
    assert "STACK_NAME=mysite-lab" in files["deploy/lab.env.example"][0]
    assert "APP_IMAGE=mysite\nSTACK_NAME=mysite\n" in files["deploy/prod.env.example"][0]
    assert files["tasks.py"][0] == (ROOT / "tasks.py").read_text()
    assert files["docker-entrypoint.sh"][1] == 0o755


def test_a_missing_anchor_is_reported():
    with pytest.raises(render.TemplateDrift) as info:
        render.substitute("FROM x\n", [("COPY project/ /app/", "COPY ./ /app/")], "Dockerfile")
    assert str(info.value) == "Dockerfile: the anchor 'COPY project/ /app/' is missing; update deploy/init/render.py"


# ---- writing: only what is missing, listed, idempotent -----------------------------------------------------
def test_init_writes_what_is_missing_and_lists_it(tmp_path, capsys):
    make_project(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM mine\n")
    out = run_init(tmp_path, capsys)
    assert out[0] == (f"{tmp_path}: Django project mysite (settings mysite.settings, WSGI mysite.wsgi.application, "
                      "manage.py in ., requirements from requirements.txt)")
    assert out[1:10] == ["wrote    tasks.py", "wrote    docker-entrypoint.sh", "wrote    docker-compose.yml",
                         "wrote    .env.example", "wrote    .dockerignore", "wrote    deploy/prod.env.example",
                         "wrote    deploy/staging.env.example", "wrote    deploy/lab.env.example",
                         "skipped  Dockerfile (exists; never overwritten) but it is not the toolkit's: move it away "
                         "and rerun init to get the toolkit's"]
    assert out[-3:] == ["next:", f"  cd {tmp_path} && inv build && inv smoke    # build the image and prove it serves",
                        "  inv up                                   # run it with Postgres on http://127.0.0.1:8000/"]
    assert (tmp_path / "Dockerfile").read_text() == "FROM mine\n"
    assert (tmp_path / "docker-entrypoint.sh").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "mysite" / "settings.py").read_text() == SETTINGS  # the user's settings are never touched


def test_second_run_changes_nothing(tmp_path, capsys):
    make_project(tmp_path)
    run_init(tmp_path, capsys)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    out = run_init(tmp_path, capsys)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not [line for line in out if line.startswith("wrote")]
    assert len([line for line in out if line.startswith("skipped")]) == 9
    assert f"nothing to write: {tmp_path} already has every file" in out


def test_git_note_only_outside_a_repository(tmp_path):
    p = write.plan(tmp_path, {})
    assert any(line.startswith("note: images are tagged by git commit") for line in write.report(p, [], False))
    assert not any(line.startswith("note:") for line in write.report(p, [], True))


def test_apply_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    p = write.plan(tmp_path, {"a.txt": ("new", 0o644)})
    (tmp_path / "a.txt").write_text("theirs")
    assert write.apply(p) == [] and (tmp_path / "a.txt").read_text() == "theirs"


def test_a_dangling_symlink_counts_as_existing(tmp_path):
    (tmp_path / "tasks.py").symlink_to(tmp_path / "elsewhere.py")
    assert write.plan(tmp_path, {"tasks.py": ("x", 0o644)}).skip == ("tasks.py",)


def test_repo_tasks_py_is_the_one_import_and_ns_has_every_task():
    assert "from deploy.tasks import ns" in (ROOT / "tasks.py").read_text()
    from deploy.tasks import ns

    names = set(ns.task_names)
    assert {"init", "build", "smoke", "up", "down", "deploy", "rollback", "lab.up", "cluster.up"} <= names


def test_a_foreign_dockerfile_is_kept_and_reported(tmp_path, capsys):
    make_project(tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM python:3.14-slim\n")  # e.g. the one `wagtail start` writes
    (tmp_path / ".dockerignore").write_text("node_modules/\n")
    out = run_init(tmp_path, capsys)
    assert ("skipped  Dockerfile (exists; never overwritten) but it is not the toolkit's: move it away and rerun "
            "init to get the toolkit's") in out
    assert "skipped  .dockerignore (exists; never overwritten)" in out
    assert (tmp_path / "Dockerfile").read_text() == "FROM python:3.14-slim\n"
    (tmp_path / "Dockerfile").unlink()
    out = run_init(tmp_path, capsys)
    assert out[1] == "wrote    Dockerfile" and "djdeploy_django" in (tmp_path / "Dockerfile").read_text()


@pytest.mark.parametrize("requirements,hashed", [("requirements.txt", False), ("pyproject.toml", False),
                                                 ("requirements.lock", True)])
def test_rendered_dockerfiles_are_hadolint_clean(tmp_path, requirements, hashed):
    import dataclasses

    exe = shutil.which("hadolint")
    assert exe, "hadolint missing: pip install -r requirements-dev.txt"
    p = dataclasses.replace(render.BUNDLED, app_dir="", settings="mysite.settings", slug="mysite",
                            requirements=requirements, hashed=hashed)
    (tmp_path / "Dockerfile").write_text(render.render(p)["Dockerfile"][0])
    r = subprocess.run([exe, "--failure-threshold", "warning", str(tmp_path / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
