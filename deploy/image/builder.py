"""Build the app image through the Docker SDK: our own build context (honoring .dockerignore), the host's CA
bundle for TLS-intercepting proxies added for the builder stage only, streamed progress, immutable tags.

Pure parts (CA discovery, context file list, build arguments, tags) are separate from the one function that
talks to the engine (``build``), so unit tests check them without an engine.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.core import gitinfo
from deploy.image import buildargs
from deploy.local import localenv
from deploy.core.errors import ConfigError, ToolkitError
from deploy.core import project

ROOT = project.ROOT
CA_NAME = "build-ca.pem"  # the Dockerfile's builder stage looks for exactly this name
CA_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


@dataclass(frozen=True)
class BuiltImage:
    ref: str       # e.g. "djapp:abc1234"
    id: str
    size: int      # bytes
    seconds: float


def ca_bundle(environ=None) -> Path | None:
    """The CA bundle pip should trust inside the build: the first of PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE."""
    environ = os.environ if environ is None else environ
    for name in CA_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            path = Path(value)
            if not path.is_file():
                raise ConfigError([f"{name}={value}: no such file; point it at a PEM bundle or unset it"])
            return path
    return None


def dockerignore_patterns(root: Path = ROOT) -> list[str]:
    path = root / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_files(root: Path = ROOT) -> list[str]:
    """Relative paths of the files the build context holds (Docker's .dockerignore rules, via the SDK)."""
    from docker.utils.build import exclude_paths

    files = exclude_paths(str(root), dockerignore_patterns(root), dockerfile="Dockerfile")
    return sorted(f for f in files if (root / f).is_file() and f != CA_NAME)


CONTRACT = "djdeploy_django"  # the image contract package: the Dockerfile copies this directory of the context
EXTRAS = ("s3",)  # IMAGE_EXTRAS: optional parts of the contract, each a djdeploy_django/requirements-<extra>.lock


def contract_dir(root: Path = ROOT) -> Path | None:
    """The contract package to add to the build context, or None when the project carries it (this repository).

    A project prepared by `inv init` has no copy of its own: the build sends the toolkit's (installed) package,
    so the image always gets the contract of the toolkit that builds it."""
    if (root / CONTRACT).is_dir():
        return None
    import importlib.util

    spec = importlib.util.find_spec(CONTRACT)
    if spec is None or not spec.submodule_search_locations:
        raise ToolkitError(f"the {CONTRACT} package is not installed next to the toolkit; reinstall djdeploy "
                           "(pip install djdeploy from this repository)")
    return Path(list(spec.submodule_search_locations)[0])


def contract_files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def context_tar(root: Path = ROOT, ca: Path | None = None, contract: Path | None = None) -> io.BytesIO:
    """An uncompressed tar of the context; the CA bundle (if any) under CA_NAME, the contract package (if given)
    under CONTRACT/. Owner/mtime normalised so the classic builder's layer cache only sees content changes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in context_files(root):
            _add(tar, root / rel, rel)
        if ca is not None:
            _add(tar, ca, CA_NAME, mode=0o644)
        for rel in contract_files(contract) if contract is not None else ():
            _add(tar, contract / rel, f"{CONTRACT}/{rel}", mode=0o644)
    buf.seek(0)
    return buf


def _add(tar, path: Path, arcname: str, mode: int | None = None) -> None:
    info = tar.gettarinfo(str(path), arcname=arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    if mode is not None:
        info.mode = mode
    with open(path, "rb") as fh:
        tar.addfile(info, fh)


def plan(tag: str | None = None, build_args: dict | None = None, settings: dict | None = None) -> dict:
    """What ``build`` will do: repository, tags and build arguments (APP_VERSION defaults to the tag)."""
    settings = localenv.load() if settings is None else settings
    repo = settings["APP_IMAGE"]
    tag = tag or gitinfo.current_tag()
    args = {"APP_VERSION": tag, **(build_args or {})}
    unknown = sorted(set(args) - {"APP_VERSION"})
    if unknown:
        raise ConfigError([f"build arg {name}: unknown; the Dockerfile accepts APP_VERSION only" for name in unknown])
    extras = settings.get("IMAGE_EXTRAS", "").replace(",", " ").split()
    bad = [e for e in extras if e not in EXTRAS]
    if bad:
        raise ConfigError([f"IMAGE_EXTRAS: unknown extra {e!r}; known: {', '.join(EXTRAS)}" for e in bad])
    if extras:   # the contract's optional locks (djdeploy_django/requirements-<extra>.lock)
        args["DJDEPLOY_EXTRAS"] = " ".join(dict.fromkeys(extras))
    args.update(buildargs.from_settings(settings))   # system/build packages, source builds, front-end build
    return {"repository": repo, "tag": tag, "refs": [f"{repo}:{tag}", f"{repo}:latest"], "buildargs": args}


def build(tag=None, build_args=None, quiet=False, out=None, root: Path = ROOT) -> BuiltImage:
    """Build the image, stream progress to ``out`` (unless quiet), tag it ``<sha>[-dirty]`` and ``latest``."""
    from deploy.core import engine

    out = out or sys.stdout
    steps = plan(tag, build_args)
    ca = ca_bundle()
    cli = engine.client(timeout=1200)
    started = time.monotonic()
    ref = steps["refs"][0]
    try:
        with engine.sdk_errors(f"image build of {ref}", "check the engine (`docker info`) and rerun `inv build`"):
            image = _stream_build(cli, root, ca, steps, ref, quiet, out)
    finally:
        cli.close()
    return BuiltImage(ref=ref, id=image.id, size=int(image.attrs["Size"]), seconds=time.monotonic() - started)


def _stream_build(cli, root: Path, ca, steps: dict, ref: str, quiet: bool, out):
    """Run the build through the SDK, streaming its log; return the tagged image."""
    image_id = None
    stream = cli.api.build(fileobj=context_tar(root, ca, contract_dir(root)), custom_context=True, tag=ref, rm=True, forcerm=True,
                           buildargs=steps["buildargs"], decode=True,
                           labels={"org.opencontainers.image.version": steps["tag"]})
    for chunk in stream:
        if "error" in chunk:
            raise ToolkitError(f"image build failed: {chunk['error'].strip()}; fix the step above and rerun `inv build`")
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        text = chunk.get("stream", "")
        if text and not quiet:
            out.write(text)
            out.flush()
    image = cli.images.get(image_id or ref)
    image.tag(steps["repository"], "latest")
    return image


def human_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
