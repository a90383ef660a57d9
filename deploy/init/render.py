"""The files `inv init` writes, rendered from the repository's own files (no drifting copies).

deploy/templates/ links to the repository's Dockerfile, docker-entrypoint.sh, docker-compose.yml, .env.example,
.dockerignore and tasks.py (an installed toolkit carries their contents). Rendering replaces the bundled project's
names (the anchors below) with the detected ones; rendering the bundled project itself gives the repository's
files byte for byte (a unit test checks it), so a change to those files reaches every future `inv init`.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from deploy.init.detect import Project

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
DEPLOY_EXAMPLES = Path(__file__).resolve().parent.parent  # deploy/<env>.env.example
ENV_EXAMPLES = ("prod.env.example", "staging.env.example", "lab.env.example")
BUNDLED = Project(root=Path("."), app_dir="project", settings="config.settings", wsgi="config.wsgi.application",
                  requirements="project/requirements.lock", hashed=True, admin_prefix=None, slug="djapp",
                  smoke_text="<h1>Notes</h1>")
PIN_CA = "RUN if [ -f /tmp/build/build-ca.pem ]; then export PIP_CERT=/tmp/build/build-ca.pem; fi \\\n"
# [project] dependencies of a pyproject.toml as a requirements file (Python 3.11+ tomllib; the project is not built).
FROM_PYPROJECT = (" && python3 -c 'import tomllib; d = tomllib.load(open(\"/tmp/build/pyproject.toml\", \"rb\")); "
                  "print(\"\\n\".join(d[\"project\"][\"dependencies\"]))' > /tmp/build/requirements.txt \\\n")


class TemplateDrift(AssertionError):
    """An anchor is gone from a repository file: update deploy/init/render.py with the file."""


def substitute(text: str, rules, name: str) -> str:
    for old, new in rules:
        if old not in text:
            raise TemplateDrift(f"{name}: the anchor {old!r} is missing; update deploy/init/render.py")
        text = text.replace(old, new)
    return text


def dockerfile_rules(p: Project) -> list:
    source = PurePosixPath(p.requirements)
    installed = "requirements.txt" if source.name == "pyproject.toml" else source.name
    rules = [("COPY project/requirements.lock build-ca.pem* /tmp/build/", f"COPY {p.requirements} build-ca.pem* /tmp/build/"),
             ("--require-hashes -r /tmp/build/requirements.lock",
              f"{'--require-hashes ' if p.hashed else ''}-r /tmp/build/{installed}"),
             ("DJDEPLOY_SETTINGS_MODULE=config.settings", f"DJDEPLOY_SETTINGS_MODULE={p.settings}"),
             ("COPY project/ /app/", f"COPY {p.app_dir or '.'}/ /app/"),
             # the front-end stage's two COPYs (manifests, then sources): relative to the directory of manage.py
             ("COPY project/manage.py project/${DJDEPLOY_ASSETS_SRC}",
              "COPY {0}manage.py {0}${{DJDEPLOY_ASSETS_SRC}}".format(f"{p.app_dir}/" if p.app_dir else ""))]
    if source.name == "pyproject.toml":
        rules.append((PIN_CA, PIN_CA + FROM_PYPROJECT))
    return rules


def render(p: Project) -> dict[str, tuple[str, int]]:
    """Relative path -> (content, file mode) of every file init may write."""
    def read(name):
        return (TEMPLATES / name).read_text(encoding="utf-8")

    names = [("djapp", p.slug)]
    files = {
        "tasks.py": (read("tasks.py"), 0o644),
        "Dockerfile": (substitute(read("Dockerfile"), dockerfile_rules(p), "Dockerfile"), 0o644),
        "docker-entrypoint.sh": (read("docker-entrypoint.sh"), 0o755),
        "docker-compose.yml": (substitute(read("docker-compose.yml"), names, "docker-compose.yml"), 0o644),
        ".env.example": (substitute(read("env.example"), names + [
            ("\nSMOKE_PATH=/\n", f"\nSMOKE_PATH={p.smoke_path}\n"),
            ("\nSMOKE_TEXT=<h1>Notes</h1>\n", f"\nSMOKE_TEXT={p.smoke_text}\n")], ".env.example"), 0o644),
        ".dockerignore": ((substitute(read("dockerignore.subdir"), [("project/", f"{p.app_dir}/")], ".dockerignore")
                           if p.app_dir else read("dockerignore")), 0o644),
    }
    for name in ENV_EXAMPLES:
        text = (DEPLOY_EXAMPLES / name).read_text(encoding="utf-8")
        rules = [("djapp", p.slug)] if "djapp" in text else [("djlab", f"{p.slug}-lab")]
        files[f"deploy/{name}"] = (substitute(text, rules, name), 0o644)
    return files
