"""`django-admin startproject` (its default template untouched) + `djdeploy init`, then `inv build`, `inv smoke` and
`inv up` in that project with the pip-installed toolkit: the admin login page serves and a foreign Host gets 400."""

from __future__ import annotations

import http.client
import subprocess

import pytest

from tests.own.conftest import OwnProject, cleanup, git_commit

pytestmark = pytest.mark.engine
STATE: dict = {}


def get(port: int, path: str, host: str = "localhost"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def project(toolkit_venv, tmp_path_factory, docker_client):
    path = tmp_path_factory.mktemp("startproject")
    subprocess.run([str(toolkit_venv / "bin" / "python"), "-m", "django", "startproject", "mysite", str(path)],
                   check=True, timeout=60)
    (path / "requirements.txt").write_text("django==5.2.19\n")  # what a project states; startproject writes none
    p = OwnProject(toolkit_venv, path, "mysite")
    yield p
    cleanup(p, docker_client)


@pytest.fixture(autouse=True)
def logs_on_failure(request, project):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- compose logs of {project.compose_project} ---\n{project.logs()}")


def test_init_writes_the_files_and_leaves_the_project_alone(project):
    settings_before = (project.path / "mysite" / "settings.py").read_bytes()
    out = project.run(str(project.venv / "bin" / "djdeploy"), "init", str(project.path)).stdout
    assert out.splitlines()[0].endswith("Django project mysite (settings mysite.settings, WSGI mysite.wsgi.application, "
                                        "manage.py in ., requirements from requirements.txt)")
    for rel in ("tasks.py", "Dockerfile", "docker-entrypoint.sh", ".dockerignore", "docker-compose.yml", ".env.example",
                "deploy/prod.env.example", "deploy/staging.env.example", "deploy/lab.env.example"):
        assert f"wrote    {rel}" in out and (project.path / rel).is_file(), rel
    assert "inv build && inv smoke" in out and "inv up" in out
    assert (project.path / "mysite" / "settings.py").read_bytes() == settings_before
    again = project.run(str(project.venv / "bin" / "djdeploy"), "init", str(project.path)).stdout
    assert "wrote" not in again and again.count("skipped") == 9
    git_commit(project.path)
    STATE["sha"] = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=project.path, capture_output=True,
                                  text=True, check=True).stdout.strip()


def test_build_and_smoke(project):
    assert "sha" in STATE, "init failed"
    out = project.inv("build", "--quiet").stdout
    assert f"built {project.image}:{STATE['sha']} (also :latest)" in out
    smoke = project.inv("smoke").stdout
    for line in ("ok   uwsgi booted", "ok   page answers", "ok   foreign host rejected (400, empty body)",
                 "ok   hashed static files (200, expires a year ahead)", "ok   health endpoint"):
        assert line in smoke, smoke
    STATE["built"] = True


def test_up_serves_the_admin_and_rejects_a_foreign_host(project):
    assert STATE.get("built"), "build failed"
    out = project.inv("up", "--timeout", "120").stdout
    assert f"ready: http://127.0.0.1:{project.port}/ ({project.image}:{STATE['sha']}" in out
    status, headers, body = get(project.port, "/admin/login/")
    assert status == 200 and b"Django administration" in body, (status, body[:200])
    assert headers["X-App-Version"] == STATE["sha"]
    assert get(project.port, "/admin/login/", host="evil.example.com")[::2] == (400, b"")
    assert get(project.port, "/health/?ready=1")[::2] == (200, b"ok")
    # the admin really uses Postgres: the migrations ran in the app container on start
    shown = project.inv("manage", "--", "showmigrations", "auth").stdout
    assert "[X] 0001_initial" in shown


@pytest.mark.lab
def test_a_lab_deploy_and_a_rolling_update_under_load_lose_no_request(project):
    """The same project deployed to the lab Swarm with the installed toolkit (`inv deploy --env lab`, plain HTTP:
    TLS_MODE=external), then a one-line change deployed while a client loads it: 0 failed requests, both versions."""
    import secrets
    import sys
    import time

    from tests.own.conftest import ROOT, free_port

    assert STATE.get("built"), "build failed"
    sys.path.insert(0, str(ROOT / "bench"))
    from loadgen import LoadGenerator

    sys.path.insert(0, str(ROOT / "tests" / "ship"))
    from shiphelpers import lab_problem, remove_pushed_images, remove_stack

    from deploy.lab import deploy_env

    problem = lab_problem()
    assert not problem, problem
    stack, port = f"djtestown{secrets.token_hex(3)}", free_port()
    key = project.path.parent / f"{project.name}-secret-key"
    key.write_text(secrets.token_urlsafe(50))
    key.chmod(0o600)
    deploy_env.write_lab_env(project.path / "deploy", name="lab", stack=stack, port=port, tls=None, extra={
        "APP_IMAGE": project.image, "DJANGO_SECRET_KEY_FILE": str(key), "CONVERGE_TIMEOUT": "180"})
    with open(project.path / ".git" / "info" / "exclude", "a") as fh:
        fh.write("deploy/lab.env\n")   # the user's environment file is not part of the release
    try:
        assert "is serving on lab" in project.inv("deploy", "--env", "lab").stdout
        gen = LoadGenerator(port, "/admin/login/", rate=50, seconds=240).start()
        try:
            views = project.path / "mysite" / "urls.py"
            views.write_text(views.read_text() + "# one more line\n")
            git_commit(project.path)
            out = project.inv("deploy", "--env", "lab").stdout
            time.sleep(2)
        finally:
            stats = gen.stop()
        print("load:", stats.summary())
        assert (stats.failed, stats.non2xx) == (0, 0) and stats.sent >= 100, stats.summary()
        assert len(stats.versions) == 2 and "is serving on lab" in out, (stats.summary(), out[-2000:])
    finally:
        remove_stack(stack)
        remove_pushed_images(project.image)
