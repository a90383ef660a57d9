"""The local stack's resource limits (docker-compose.yml: APP_/DB_ MEMORY, CPUS, CPU_SHARES, PIDS): defaults and
checks, so a bad value is a one-line error naming the variable before `inv up` touches anything."""

from __future__ import annotations

import os
import re

DEFAULTS = {f"{svc}_{key}": value for svc in ("APP", "DB")
            for key, value in (("MEMORY", "512m"), ("CPUS", "1.0"), ("CPU_SHARES", "512"), ("PIDS", "200"))}
_MEMORY = re.compile(r"^([0-9]+)([bkmg]?)$", re.I)
_UNIT = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
MIN_MEMORY = 6 * 1024 ** 2  # the engine refuses less


def _cpus(value: str) -> float | None:
    try:
        return float(value) if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value) else None
    except ValueError:
        return None


def problems(values: dict, cpu_count: int | None = None) -> list[str]:
    """Pure: one line per bad limit in ``values`` (merged settings); missing keys take the defaults."""
    cpu_count = cpu_count or os.cpu_count() or 1
    out = []
    for svc in ("APP", "DB"):
        memory = values.get(f"{svc}_MEMORY", DEFAULTS[f"{svc}_MEMORY"])
        m = _MEMORY.match(memory)
        if not m or int(m.group(1)) * _UNIT[m.group(2).lower()] < MIN_MEMORY:
            out.append(f"{svc}_MEMORY={memory!r}: give a size of at least 6m, e.g. 512m or 1g")
        cpus = values.get(f"{svc}_CPUS", DEFAULTS[f"{svc}_CPUS"])
        number = _cpus(cpus)
        if number is None or not 0.01 <= number <= cpu_count:
            out.append(f"{svc}_CPUS={cpus!r}: give a number of CPUs from 0.01 to {cpu_count} (this machine's), "
                       "e.g. 1.0")
        shares = values.get(f"{svc}_CPU_SHARES", DEFAULTS[f"{svc}_CPU_SHARES"])
        if not shares.isdigit() or not 2 <= int(shares) <= 262144:
            out.append(f"{svc}_CPU_SHARES={shares!r}: give a relative CPU weight from 2 to 262144 (the engine's "
                       "default is 1024)")
        pids = values.get(f"{svc}_PIDS", DEFAULTS[f"{svc}_PIDS"])
        if not pids.isdigit() or int(pids) < 1:
            out.append(f"{svc}_PIDS={pids!r}: give the most processes the container may run, e.g. 200")
    return out
