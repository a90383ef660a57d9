"""The Debian base image, built offline from Debian's packages: debootstrap minbase, slimmed like the
official ``debian:*-slim`` images, imported under the name the project's Dockerfile uses.

Slim is enforced for later installs too: dpkg path-excludes (docs, man pages, info, locales) and
apt's docker-clean hooks (no .deb cache, no pkgcache) are part of the image.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from deploy.core.errors import ToolkitError
from deploy.lab import paths

RECIPE_VERSION = "1"
MIRROR = os.environ.get("DJDEPLOY_LAB_DEBIAN_MIRROR") or "http://deb.debian.org/debian"
SUITES = {"13": "trixie", "12": "bookworm", "trixie": "trixie", "bookworm": "bookworm"}

# /etc/dpkg/dpkg.cfg.d/docker-slim: what dpkg never unpacks (as in the official slim images; we do
# not keep /usr/share/doc/*/copyright: the issue asks for no /usr/share/doc content at all).
DPKG_EXCLUDES = "".join(f"path-exclude {p}\n" for p in (
    "/usr/share/doc/*", "/usr/share/man/*", "/usr/share/groff/*", "/usr/share/info/*",
    "/usr/share/lintian/*", "/usr/share/linda/*", "/usr/share/locale/*"))

_CLEAN = '"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"'
APT_CONF = {  # /etc/apt/apt.conf.d/<name>: the official images' docker-* settings
    "docker-clean": (f"DPkg::Post-Invoke {{ {_CLEAN}; }};\nAPT::Update::Post-Invoke {{ {_CLEAN}; }};\n"
                     'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'),
    "docker-no-languages": 'Acquire::Languages "none";\n',
    "docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
    "docker-autoremove-suggests": 'APT::AutoRemove::SuggestsImportant "false";\n',
    "docker-no-recommends": 'APT::Install-Recommends "false";\n',
}
# What debootstrap leaves that a slim image does not carry: (directory, name pattern or None = everything).
REMOVE = (("var/cache/apt", None), ("var/lib/apt/lists", None), ("usr/share/doc", None), ("usr/share/man", None),
          ("usr/share/groff", None), ("usr/share/info", None), ("usr/share/lintian", None),
          ("usr/share/linda", None), ("usr/share/locale", None), ("var/cache/debconf", "*-old"),
          ("var/lib/dpkg", "*-old"), ("var/log", "*.log"), ("var/log/apt", None), ("tmp", None), ("var/tmp", None))
IMPORT_CHANGES = ('CMD ["bash"]', "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")


def suite_for(image: str) -> str | None:
    """Pure: the Debian suite for a base image name we can build (``debian:13.7-slim`` -> trixie)."""
    m = re.fullmatch(r"(?:[\w.:-]+/)*debian:([a-z]+|\d+)(?:\.\d+)*(?:-slim)?", image)
    return SUITES.get(m.group(1)) if m else None


def is_base(image: str) -> bool:
    return suite_for(image) is not None


def recipe_hash(suite: str, mirror: str = MIRROR) -> str:
    """Pure: what the image is built from; stored as a label so a second run compares labels only."""
    text = repr((RECIPE_VERSION, suite, mirror, DPKG_EXCLUDES, sorted(APT_CONF.items()), REMOVE, IMPORT_CHANGES))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def debootstrap_argv(suite: str, rootfs: Path, mirror: str = MIRROR) -> list[str]:
    return ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror]


def config_files() -> dict[str, str]:
    """Pure: path inside the root -> content, for the slimming configuration."""
    files = {"etc/dpkg/dpkg.cfg.d/docker-slim": DPKG_EXCLUDES}
    files.update({f"etc/apt/apt.conf.d/{name}": text for name, text in APT_CONF.items()})
    return files


def removal_argvs(rootfs: Path) -> list[list[str]]:
    """Pure: the `find ... -delete` commands that slim ``rootfs`` (directories themselves are kept)."""
    argvs = []
    for rel, pattern in REMOVE:
        argv = ["find", str(rootfs / rel), "-mindepth", "1"]
        if pattern:
            argv += ["-maxdepth", "1", "-name", pattern]
        argvs.append(argv + ["-delete"])
    return argvs


def import_argv(tarball: Path, name: str, labels: dict) -> list[str]:
    argv = ["docker", "import"]
    for change in (*IMPORT_CHANGES, *(f"LABEL {k}={json.dumps(str(v))}" for k, v in sorted(labels.items()))):
        argv += ["--change", change]
    return argv + [str(tarball), name]


def build(runner, names: list[str], lab_id: str, say=print) -> float:
    """debootstrap once, slim, import under every name in ``names`` (same suite). Returns seconds."""
    suite = suite_for(names[0])
    if suite is None or any(suite_for(n) != suite for n in names):
        raise ToolkitError(f"cannot build base image(s) {', '.join(names)}: only debian:<12|13>[.x]-slim names")
    started = time.monotonic()
    work = paths.LAB_DIR / "base-build"
    rootfs, tarball = work / "rootfs", work / "rootfs.tar"
    runner.run(["rm", "-rf", str(work)])
    runner.run(["mkdir", "-p", str(work)])
    try:
        say(f"debootstrap {suite} (minbase) from {MIRROR}: about a minute")
        runner.run(debootstrap_argv(suite, rootfs), hide=True, timeout=900)
        for rel, text in config_files().items():
            runner.put(text, str(rootfs / rel), mode=0o644)
        for argv in removal_argvs(rootfs):
            if Path(argv[1]).is_dir():
                runner.run(argv)
        runner.run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."])
        labels = {paths.LABEL: lab_id, paths.HASH_LABEL: recipe_hash(suite)}
        for name in names:
            runner.run(import_argv(tarball, name, labels), hide=True)
    finally:
        runner.run(["rm", "-rf", str(work)])
    return time.monotonic() - started
