"""The toolkit as another project uses it: where the project root is, the contract package sent with each build,
and the installable distribution's declared data files."""

import tarfile
import tomllib
import types
from pathlib import Path

from deploy.core import project
from deploy.image import builder

ROOT = Path(__file__).resolve().parents[2]


def test_root_from_the_environment_first(tmp_path):
    assert project.find_root({"DJDEPLOY_PROJECT_DIR": str(tmp_path)}, {}, cwd=ROOT) == tmp_path.resolve()


def test_root_is_the_directory_of_the_tasks_py_invoke_loaded(tmp_path):
    loaded = {"tasks": types.SimpleNamespace(__file__=str(tmp_path / "tasks.py"))}
    assert project.find_root({}, loaded, cwd=ROOT) == tmp_path.resolve()
    package = {"tasks": types.SimpleNamespace(__file__=str(tmp_path / "tasks" / "__init__.py"))}
    assert project.find_root({}, package, cwd=ROOT) == tmp_path.resolve()


def test_root_searches_upward_from_the_working_directory(tmp_path):
    (tmp_path / "tasks.py").write_text("")
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert project.find_root({}, {}, cwd=tmp_path / "a" / "b", checkout=tmp_path / "none") == tmp_path.resolve()


def test_root_falls_back_to_the_source_checkout_then_the_working_directory(tmp_path):
    assert project.find_root({}, {}, cwd=tmp_path, checkout=ROOT) == ROOT
    assert project.find_root({}, {}, cwd=tmp_path, checkout=tmp_path / "none") == tmp_path.resolve()


def test_this_repository_carries_its_own_contract_package():
    assert builder.contract_dir(ROOT) is None


def test_a_project_without_the_package_gets_the_toolkits_in_its_build_context(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    contract = builder.contract_dir(tmp_path)
    assert contract == (ROOT / "djdeploy_django").resolve() or (contract / "contract.py").is_file()
    with tarfile.open(fileobj=builder.context_tar(tmp_path, None, contract)) as tar:
        names = tar.getnames()
        info = tar.getmember("djdeploy_django/requirements.lock")
    assert names[0] == "Dockerfile" and "djdeploy_django/settings.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert (info.uid, info.mtime, info.mode) == (0, 0, 0o644)


def test_distribution_declares_its_packages_and_run_time_files():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "djdeploy" and meta["build-system"]["build-backend"] == "setuptools.build_meta"
    assert meta["project"]["scripts"] == {"djdeploy": "deploy.cli:main"}
    data = meta["tool"]["setuptools"]["package-data"]
    for package, patterns in data.items():
        base = ROOT.joinpath(*package.split("."))
        for pattern in patterns:
            assert list(base.glob(pattern)), (package, pattern)
    assert (ROOT / "deploy" / "ship" / "proxy" / "haproxy.cfg").is_file() and "proxy/haproxy.cfg" in data["deploy.ship"]


def test_every_run_time_file_of_the_toolkit_is_in_the_distribution():
    """A file that is not a package's module (a recipe, a config, a script) ships only if package-data names it."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {p for package, patterns in data.items() for pattern in patterns
               for p in ROOT.joinpath(*package.split(".")).glob(pattern)}
    import subprocess

    ignored = set(subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "deploy",
                                  "djdeploy_django"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    for top in ("deploy", "djdeploy_django"):
        for path in (ROOT / top).rglob("*"):
            if path.is_dir() or "__pycache__" in path.parts or str(path.relative_to(ROOT)) in ignored:
                continue   # a generated, git-ignored file (deploy/lab.env) is the user's, not the toolkit's
            module = path.suffix == ".py" and (path.parent / "__init__.py").exists()
            assert module or path in shipped, f"{path.relative_to(ROOT)} is not in pyproject's package-data"


def test_the_djdeploy_command_lists_every_task_without_a_tasks_py(tmp_path):
    import subprocess
    import sys

    code = "import sys; sys.argv = ['djdeploy', '--list']; from deploy.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines()[2:] if line.strip() and line.startswith("  ")}
    assert {"init", "build", "smoke", "up", "deploy", "lab.up"} <= listed
