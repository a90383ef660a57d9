"""What this lab started or created, kept in paths.STATE_FILE so `inv lab.down` removes that and nothing else.

Claims only grow: a later run that finds the engine answering does not forget that an earlier run
started it. A lab that found the engine or the swarm already there never claims them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from deploy.lab import paths

FIELDS = {
    "engine_started": False,     # dockerd started by this lab (pid in paths.ENGINE_PIDFILE)
    "swarm_initialized": False,  # `docker swarm init` run by this lab
    "registry_pid": None,
    "sshd_pid": None,
    "images": [],                # images this lab built or imported
    "compose_plugin": None,      # the plugin link this lab created
    "packages": [],              # Debian packages this lab installed (reported; never removed)
    "acme": None,                # the ACME CA (Pebble): its network, containers, directory URL (labelled;
                                 # `down` removes them with every other container/network of the lab label)
    "s3": None,                  # the object store (moto): its network, container, endpoint, bucket (labelled)
}


def load(path: Path | None = None) -> dict:
    path = path or paths.STATE_FILE
    data = dict(FIELDS)
    data["images"], data["packages"] = [], []
    try:
        data.update(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        pass
    except ValueError:
        from deploy.core.errors import ToolkitError

        raise ToolkitError(f"{path}: not valid JSON; fix or delete it (it records what the lab created)")
    return data


def merge(old: dict, **claims) -> dict:
    """Pure: add claims; booleans stay true once true, lists accumulate, pids are replaced when given."""
    new = dict(old)
    for key, value in claims.items():
        if key not in FIELDS:
            raise KeyError(key)
        if isinstance(FIELDS[key], bool):
            new[key] = bool(old.get(key)) or bool(value)
        elif isinstance(FIELDS[key], list):
            new[key] = list(dict.fromkeys([*old.get(key, []), *value]))
        elif value is not None:
            new[key] = value
    return new


def save(data: dict, path: Path | None = None) -> None:
    path = Path(path or paths.STATE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
