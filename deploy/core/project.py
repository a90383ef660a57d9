"""Where the project lives: the one place that answers it (the toolkit's own files are found next to its modules).

The project root holds tasks.py, the Dockerfile, docker-compose.yml, .env and deploy/<env>.env files. It is, first
found wins:
  1. ``DJDEPLOY_PROJECT_DIR`` (tests, or a project driven from elsewhere);
  2. the directory of the tasks.py Invoke loaded (``inv`` registers it as the module ``tasks`` before running it,
     so this holds for an installed toolkit used by another project's tasks.py, also with ``inv -r DIR``);
  3. the working directory or its nearest parent holding a tasks.py (how Invoke itself finds it);
  4. the toolkit's own source checkout (this repository: the bundled project), when it holds a tasks.py;
  5. the working directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SOURCE_CHECKOUT = Path(__file__).resolve().parents[2]


def _loaded_tasks_dir(modules) -> Path | None:
    origin = getattr(modules.get("tasks"), "__file__", None)
    if not origin:
        return None
    path = Path(origin).resolve()
    if path.name == "tasks.py":
        return path.parent
    if path.name == "__init__.py" and path.parent.name == "tasks":
        return path.parent.parent
    return None


def find_root(environ=None, modules=None, cwd: Path | None = None, checkout: Path = SOURCE_CHECKOUT) -> Path:
    """The project root by the rules above (pure over its arguments; unit-tested)."""
    environ = os.environ if environ is None else environ
    if environ.get("DJDEPLOY_PROJECT_DIR"):
        return Path(environ["DJDEPLOY_PROJECT_DIR"]).resolve()
    loaded = _loaded_tasks_dir(sys.modules if modules is None else modules)
    if loaded is not None:
        return loaded
    cwd = (cwd or Path.cwd()).resolve()
    for directory in (cwd, *cwd.parents):
        if (directory / "tasks.py").is_file():
            return directory
    if (checkout / "tasks.py").is_file():
        return checkout
    return cwd


ROOT = find_root()
