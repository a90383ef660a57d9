"""Task: prepare an existing Django project for the toolkit."""

from deploy.tasks._base import task


@task(help={"path": "the Django project's directory (the one holding manage.py, or its parent)"})
def init(c, path):
    """Write what an existing Django project lacks to run with the toolkit (never overwrites)."""
    import subprocess
    from pathlib import Path

    from deploy.init import detect, render, write

    project = detect.detect(Path(path))
    plan = write.plan(project.root, render.render(project))
    written = write.apply(plan)
    in_git = subprocess.run(["git", "-C", str(project.root), "rev-parse", "--git-dir"], capture_output=True).returncode == 0
    print(f"{project.root}: Django project {project.slug} (settings {project.settings}, WSGI {project.wsgi}, "
          f"manage.py in {project.app_dir or '.'}, requirements from {project.requirements})")
    for line in write.report(plan, written, in_git):
        print(line)
