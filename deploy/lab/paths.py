"""Where the lab lives and how to reach it. One lab per machine, shared by every checkout.

Other parts of the toolkit (tests, the lab deploy environment) read these; nothing here has side effects.
"""

from __future__ import annotations

import os
from pathlib import Path

# Overridable so a test can run a second, isolated lab on other ports against the same engine.
LAB_DIR = Path(os.environ.get("DJDEPLOY_LAB_DIR") or Path.home() / ".local" / "state" / "djdeploy-lab")

# Local registry (Debian's docker-registry package, run as a process).
REGISTRY_HOST = "127.0.0.1"
REGISTRY_PORT = int(os.environ.get("DJDEPLOY_LAB_REGISTRY_PORT") or 5000)
REGISTRY = f"{REGISTRY_HOST}:{REGISTRY_PORT}"
REGISTRY_DIR = LAB_DIR / "registry"
REGISTRY_PASSWORD_FILE = REGISTRY_DIR / "password"  # mode 0600; user name in REGISTRY_USER
REGISTRY_USER = "lab"

# SSH "Swarm manager": sshd on loopback, root login with the lab key only.
SSH_HOST = "127.0.0.1"
SSH_PORT = int(os.environ.get("DJDEPLOY_LAB_SSH_PORT") or 2222)
SSH_USER = "root"
SSH_DIR = LAB_DIR / "ssh"
SSH_KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"

# Engine started by the lab (only when none answered before).
ENGINE_LOG = LAB_DIR / "dockerd.log"
ENGINE_PIDFILE = LAB_DIR / "dockerd.pid"

# Stand-in images: deploy/lab/images/<dir>/{Dockerfile,IMAGE}; IMAGE holds the name it provides.
IMAGES_DIR = Path(__file__).resolve().parent / "images"

LABEL = "djdeploy.lab"             # on everything the lab creates; value: the LAB_DIR that made it
HASH_LABEL = "djdeploy.lab.hash"   # content hash of the recipe an image was built from
STATE_FILE = LAB_DIR / "state.json"  # what this lab started or created (read by `inv lab.down`)
REGISTRY_LOG = REGISTRY_DIR / "registry.log"
REGISTRY_PIDFILE = REGISTRY_DIR / "registry.pid"
SSHD_LOG = SSH_DIR / "sshd.log"
SSHD_PIDFILE = SSH_DIR / "sshd.pid"


def registry_password() -> str:
    """The lab registry's password (read from its 0600 file)."""
    return REGISTRY_PASSWORD_FILE.read_text().strip()
