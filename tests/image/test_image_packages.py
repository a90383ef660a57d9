"""A project's own image needs, on the real engine: Debian packages at run time (IMAGE_SYSTEM_PACKAGES), build-time
packages for a source build (IMAGE_BUILD_PACKAGES + IMAGE_SOURCE_BUILDS) and a Node front-end build (IMAGE_ASSETS_*).

One scratch copy of the bundled project gets a front-end directory (a package.json whose build script uses node
only, so npm needs no registry) and mmh3 from its sdist in the lock. The test builds it through deploy.image.builder
(settings from the environment, as `inv build` reads .env), proves the runtime package, the compiled extension and
the served hashed bundle are in the image and the build tools are not, then changes one line of Python and
rebuilds: every package and front-end layer comes from the cache; a package.json change reruns only the front-end
install and build. Images are the repository djtpkgs-app (never djapp:latest) and every layer the builds created is
removed at the end.

Opt-in (about 3 minutes: a cold build with gcc and node, which the 30-minute CI budget does not have): run with
DJDEPLOY_IMAGE_PACKAGES=1.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from deploy.image.smoke import get

from .conftest import LABEL, App, free_port, secret_key

ROOT = Path(__file__).resolve().parents[2]
REPO = "djtpkgs-app"
pytestmark = [pytest.mark.engine,
              pytest.mark.skipif(os.environ.get("DJDEPLOY_IMAGE_PACKAGES") != "1",
                                 reason="slow (about 3 min: a cold build with gcc and node): set DJDEPLOY_IMAGE_PACKAGES=1 to run it")]
MMH3 = "mmh3==5.1.0 \\\n    --hash=sha256:136e1e670500f177f49ec106a4ebf0adf20d18d96990cc36ea492c651d2b406c\n"
PACKAGE_JSON = {"name": "notes-frontend", "version": "1.0.0", "private": True, "scripts": {"build": "node build.js"}}
LOCK = {"name": "notes-frontend", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
        "packages": {"": {"name": "notes-frontend", "version": "1.0.0"}}}
BUILD_JS = """const fs = require("fs");
fs.mkdirSync("../notes/static/notes/dist", {recursive: true});
fs.writeFileSync("../notes/static/notes/dist/bundle.css", "/* built by node " + process.version + " */\\n" +
                 require("./src/theme.json").css + "\\n");
"""
SETTINGS = {"APP_IMAGE": REPO, "IMAGE_SYSTEM_PACKAGES": "libjpeg62-turbo",
            "IMAGE_BUILD_PACKAGES": "gcc libc6-dev python3-dev libjpeg-dev zlib1g-dev", "IMAGE_SOURCE_BUILDS": "mmh3",
            "IMAGE_ASSETS_PACKAGES": "nodejs npm", "IMAGE_ASSETS_SRC": "frontend",
            "IMAGE_ASSETS_INSTALL": "npm ci --offline --no-audit --no-fund", "IMAGE_ASSETS_BUILD": "npm run build",
            "IMAGE_ASSETS_DIR": "notes/static/notes/dist"}
INSPECT = "; ".join((   # what the final image holds, one finding per line ("present ..." = must not be there)
    "dpkg -s libjpeg62-turbo | grep '^Status'",
    "for p in gcc libc6-dev python3-dev libjpeg-dev zlib1g-dev nodejs npm; do dpkg -s $p >/dev/null 2>&1 && echo present $p; done",
    "command -v gcc cc node npm",
    "ls /var/lib/apt/lists | grep -v -x -e lock -e partial | sed 's/^/present /'",
    "find / -xdev -perm /6000 -type f 2>/dev/null | sed 's/^/present /'",
    "python -c 'import mmh3; print(mmh3.hash(\"djtpkgs\"))'",
    "grep '^Tag:' /opt/venv/lib/python3.13/site-packages/mmh3-5.1.0.dist-info/WHEEL",
    "cat /app/staticfiles/staticfiles.json"))
CACHED_STEPS = ("DJDEPLOY_SYSTEM_PACKAGES", "DJDEPLOY_BUILD_PACKAGES", "DJDEPLOY_ASSETS_PACKAGES",
                "DJDEPLOY_ASSETS_INSTALL", "DJDEPLOY_ASSETS_BUILD", "DJDEPLOY_SOURCE_BUILDS")


def scratch_project(dest: Path) -> Path:
    for name in ("Dockerfile", "docker-entrypoint.sh", ".dockerignore"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "project", dest / "project", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".env"))
    with open(dest / "project" / "requirements.lock", "a") as fh:
        fh.write(MMH3)
    front = dest / "project" / "frontend"
    (front / "src").mkdir(parents=True)
    (front / "package.json").write_text(json.dumps(PACKAGE_JSON, indent=2))
    (front / "package-lock.json").write_text(json.dumps(LOCK, indent=2))
    (front / "build.js").write_text(BUILD_JS)
    (front / "src" / "theme.json").write_text(json.dumps({"css": "body { --djtpkgs: built; }"}))
    return dest


def steps(log: str) -> list[tuple[str, bool, str]]:
    """(instruction, reused?, resulting image id) of every step of a classic-builder log; a FROM counts as reused
    (its base image is never the build's own, so it is never removed)."""
    found = []
    for block in re.split(r"^Step \d+/\d+ : ", log, flags=re.M)[1:]:
        ids = re.findall(r"^ ---> ([0-9a-f]{12})$", block, flags=re.M)
        instruction = block.splitlines()[0]
        reused = " ---> Using cache" in block or instruction.startswith("FROM ")
        found.append((instruction, reused, ids[-1] if ids else ""))
    return found


def run_in(docker_client, ref: str, command: str) -> tuple[int, str]:
    container = docker_client.containers.run(ref, ["-c", command], entrypoint="/bin/sh", detach=True, labels=LABEL)
    try:
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True)


@pytest.fixture
def built(docker_client, monkeypatch, tmp_path):
    """build(tag) -> (BuiltImage, build log); every image and layer the builds created is removed after."""
    from deploy.image import builder

    for key, value in SETTINGS.items():
        monkeypatch.setenv(key, value)
    ctx, created, refs = scratch_project(tmp_path), [], []

    def build(tag):
        out = io.StringIO()
        image = builder.build(tag=tag, out=out, root=ctx)
        refs.append(image.ref)
        created.extend(i for _, cached, i in steps(out.getvalue()) if i and not cached)
        return image, out.getvalue()

    build.ctx = ctx
    yield build
    for ref in refs + [f"{REPO}:latest"]:
        _remove(docker_client, ref)
    for image_id in reversed(created):   # the builder and assets stages' own layers (no tagged image holds them)
        _remove(docker_client, image_id)


def _remove(docker_client, ref):
    """Remove one image (never forced); an untagged layer only when no tag of another repository names it."""
    from docker.errors import APIError

    try:
        tags = docker_client.images.get(ref).tags
        if ref.startswith(REPO + ":") or not [t for t in tags if not t.startswith(REPO + ":")]:
            docker_client.images.remove(ref, noprune=False)
    except APIError:   # gone with its child already, or a layer another image still builds on
        pass


def test_packages_and_front_end_build_are_in_the_image_and_cached_apart_from_the_code(docker_client, built):
    image, log = built("cold")
    ref, cold = image.ref, image.seconds
    code, out = run_in(docker_client, ref, INSPECT)
    lines = out.splitlines()
    assert lines[0] == "Status: install ok installed", out              # the runtime package is in the final image
    assert not [line for line in lines if line.startswith(("present", "/"))], out   # no build tool, node, setuid...
    assert re.fullmatch(r"-?\d+", lines[1]), out                         # mmh3 imports: compiled from its sdist ...
    assert lines[2] == "Tag: cp313-cp313-linux_x86_64", out              # ... here (a PyPI wheel is manylinux)
    hashed = json.loads("\n".join(lines[3:]))["paths"]["notes/dist/bundle.css"]
    assert re.fullmatch(r"notes/dist/bundle\.[0-9a-f]{12}\.css", hashed)

    port = free_port()
    container = docker_client.containers.run(
        ref, detach=True, labels=LABEL, ports={"8000/tcp": ("127.0.0.1", port)},
        environment={"DATABASE_URL": "", "DJANGO_SECRET_KEY": secret_key(), "DJANGO_ALLOWED_HOSTS": "localhost"})
    app = App(container, port)
    try:
        app.wait_ready(timeout=60)
        status, headers, body = get(port, f"/static/{hashed}")
        assert status == 200 and b"body { --djtpkgs: built; }" in body and b"built by node v" in body, (status, body)
    except AssertionError:
        print(f"--- logs of {container.short_id} ---\n{app.logs()[-4000:]}")
        raise
    finally:
        container.remove(force=True)

    views = built.ctx / "project" / "notes" / "views.py"
    views.write_text(views.read_text() + "\n# a one-line code change\n")
    started = time.monotonic()
    _, log2 = built("warm")
    warm = time.monotonic() - started
    print(f"image {image.size / 1e6:.1f} MB; cold build {cold:.1f} s, rebuild after a one-line Python change "
          f"{warm:.1f} s ({warm / cold:.0%})")
    warm_steps = steps(log2)
    expensive = [s for s in warm_steps if s[0].startswith("RUN") and any(a in s[0] for a in CACHED_STEPS)]
    assert len(expensive) == 6, warm_steps
    assert all(cached for _, cached, _ in expensive), [s for s in expensive if not s[1]]
    cold_ids = {instruction: i for instruction, _, i in steps(log)}
    assert all(cold_ids[instruction] == i for instruction, _, i in expensive)   # the very same layers
    code_step = next(n for n, s in enumerate(warm_steps) if s[0] == "COPY project/ /app/")
    assert not warm_steps[code_step][1] and all(s[1] for s in warm_steps[:code_step]), warm_steps

    # a change of the front-end's manifest reruns its install and build, and nothing of the Python side
    manifest = built.ctx / "project" / "frontend" / "package.json"
    manifest.write_text(json.dumps({**PACKAGE_JSON, "description": "changed"}, indent=2))
    started = time.monotonic()
    _, log3 = built("manifest")
    print(f"rebuild after a package.json change {time.monotonic() - started:.1f} s")
    rerun = {a for instruction, reused, _ in steps(log3) if instruction.startswith("RUN") and not reused
             for a in CACHED_STEPS if a in instruction}
    assert rerun == {"DJDEPLOY_ASSETS_INSTALL", "DJDEPLOY_ASSETS_BUILD"}, steps(log3)
