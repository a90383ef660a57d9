"""The ``djdeploy`` command (installed with the package): every task without a tasks.py, e.g. ``djdeploy init .``
in a project that has none yet. In a project, ``inv`` with its tasks.py (``from deploy.tasks import ns``) is the same."""

from invoke import Program

from deploy.tasks import ns


def main() -> None:
    Program(namespace=ns, name="djdeploy", binary="djdeploy", version="0.1.0").run()
