"""Where the project lives: the one place that answers it (the toolkit's own files are found next to its modules).

The project root holds tasks.py, the Dockerfile, docker-compose.yml, .env and deploy/<env>.env files.
``DJDEPLOY_PROJECT_DIR`` points elsewhere (tests, or a project that uses the toolkit from another checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("DJDEPLOY_PROJECT_DIR") or Path(__file__).resolve().parents[2])
