"""`inv lab.up`, `lab.down`, `lab.status`: the lab, provisioned idempotently from the project's own files.

up: check everything first (what to install, can we, ports free), then install missing Debian packages,
start dockerd if none answers, link the compose plugin, build the Debian base and the stand-ins that
are missing or stale, start the registry and the SSH manager, init the swarm, start the ACME CA (Pebble).
Each claim goes to the state file as soon as it is made, so `down` removes exactly what this lab made.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from deploy.core.errors import EngineUnavailable, ToolkitError
from deploy.lab import acme, baseimage, host, paths, procs, registry, s3, sshd, standins, state

DEFAULT_BASE = "debian:13.7-slim"
LAB_ID = str(paths.LAB_DIR)


def _client():
    from deploy.core.engine import client

    try:
        return client(timeout=30)
    except EngineUnavailable:
        return None


def base_images() -> list[str]:
    """The Debian base image names to provide: the project's FROM lines (or the override / default)."""
    override = os.environ.get("DJDEPLOY_LAB_BASE_IMAGES")
    if override:
        return [n.strip() for n in override.split(",") if n.strip()]
    names = [n for n in standins.project_images() if baseimage.is_base(n)]
    return names or [DEFAULT_BASE]


def _base_stale(cli, name: str) -> bool:
    if cli is None:
        return True
    return standins.needs_build(standins.image_labels(cli, name), baseimage.recipe_hash(baseimage.suite_for(name)))


def check_ports() -> None:
    """Raise if a lab port answers and it is not our process (checked before any side effect)."""
    if procs.port_answers("127.0.0.1", paths.REGISTRY_PORT) and not registry.pid():
        raise procs.port_taken_error(paths.REGISTRY_PORT, f"registry ({paths.REGISTRY})", registry.ENV_PORT)
    if procs.port_answers("127.0.0.1", paths.SSH_PORT) and not sshd.pid():
        raise procs.port_taken_error(paths.SSH_PORT, f"SSH manager (127.0.0.1:{paths.SSH_PORT})", sshd.ENV_PORT)


def check_acme_port(runner) -> None:
    """Raise if the ACME CA's port answers and it is not the lab's Pebble (checked before any side effect)."""
    spec = acme.lab_spec(LAB_ID)
    if spec.api_port and procs.port_answers("127.0.0.1", spec.api_port) and not acme.running(runner, spec):
        raise procs.port_taken_error(spec.api_port, f"ACME CA (127.0.0.1:{spec.api_port})", acme.ENV_PORT)


def up(runner, say=print) -> dict:
    """Provision the lab; return the state (what this lab made)."""
    started = time.monotonic()
    st = state.load()
    facts = host.host_facts()
    cli = _client()
    bases = base_images()
    packages = _preflight(runner, facts, cli, bases, say)

    paths.LAB_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)

    def claim(**kw):
        nonlocal st
        st = state.merge(st, **kw)
        state.save(st)

    if packages:
        host.install(runner, packages, say)
        claim(packages=packages)
    if cli is None:
        from deploy.core import engine

        say(f"starting dockerd (log: {paths.ENGINE_LOG})")
        host.start_engine(runner, engine.available, say)
        claim(engine_started=True)
        cli = engine.client()
    if host.ensure_compose_plugin(runner):
        claim(compose_plugin=str(host.PLUGIN))
    host.hadolint()
    to_build = [n for n in bases if _base_stale(cli, n)]
    if to_build:
        seconds = baseimage.build(runner, to_build, LAB_ID, say)
        say(f"base image {', '.join(to_build)} built in {seconds:.0f}s")
        claim(images=to_build)
    claim(images=standins.build_stand_ins(cli, LAB_ID, say))
    pid = registry.ensure(runner, say)
    if pid:
        claim(registry_pid=pid)
    pid = sshd.ensure(runner, say)
    if pid:
        claim(sshd_pid=pid)
    if _ensure_swarm(runner, cli):
        claim(swarm_initialized=True)
    claim(acme=acme.ensure(runner, acme.lab_spec(LAB_ID), say))
    claim(s3=s3.ensure(runner, s3.lab_spec(LAB_ID), say=say))
    for name in missing_project_images(cli):
        say(f"note: {name} is named by the project but not present and the lab has no recipe for it")
    say(f"lab up in {time.monotonic() - started:.1f}s (registry {paths.REGISTRY}, ssh root@127.0.0.1:{paths.SSH_PORT})")
    return st


def _preflight(runner, facts, cli, bases, say) -> list:
    """Everything checked before the lab changes anything; returns the packages to install."""
    for name in bases:
        if not baseimage.is_base(name):
            raise ToolkitError(f"cannot build base image {name}: only debian:<12|13>[.x]-slim names are supported")
    to_build = [n for n in bases if _base_stale(cli, n)]
    packages = host.missing_packages(facts, host.needed_commands(cli is not None, bool(to_build)))
    problem = host.install_problem(facts, packages, cli is not None)
    if problem:
        raise ToolkitError(problem)
    tools = host.missing_test_tools(facts)
    if tools and host.install_problem(facts, tools, True):
        say(f"note: the browser/TLS tests need {' '.join(tools)} (not installed; those tests skip)")
    elif tools:
        packages += tools
    if cli is None and not facts.is_root:
        raise ToolkitError("no Docker engine answers and starting dockerd needs root; start Docker, "
                           "or run `inv lab.up` as root")
    check_ports()
    check_acme_port(runner)
    return packages


def _ensure_swarm(runner, cli) -> bool:
    """Initialise a single-node swarm when the engine is in none; True when this lab did it."""
    if swarm_state(cli) == "inactive":
        runner.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], hide=True)
        return True
    if swarm_state(cli) != "active":
        raise ToolkitError(f"the engine's swarm is '{swarm_state(cli)}'; fix it (`docker info`) and run `inv lab.up` again")
    return False


def swarm_state(cli) -> str:
    return (cli.info().get("Swarm") or {}).get("LocalNodeState", "unknown")


def missing_project_images(cli) -> list[str]:
    from deploy.local.localenv import load

    app = load().get("APP_IMAGE", "djapp")  # the app image is built by `inv build`, not provided here
    provided = set(base_images()) | {s.name for s in standins.stand_ins()}
    return [n for n in standins.project_images() if n not in provided and n.split(":")[0] != app
            and standins.image_labels(cli, n) is None]


def status() -> list[tuple[str, bool, str]]:
    """(component, up?, one-line description) for every part of the lab."""
    st = state.load()
    rows = []
    cli = _client()
    who = " (started by the lab)" if st["engine_started"] else ""
    rows.append(("engine", cli is not None,
                 f"up, Docker {cli.version().get('Version')}{who}" if cli else "DOWN: no engine answers"))
    plugin = host.PLUGIN
    rows.append(("compose", plugin.exists(), f"{plugin} -> {os.path.realpath(plugin)}" if plugin.exists()
                 else f"MISSING: {plugin}"))
    rows.append(("hadolint", bool(_which_hadolint()), _which_hadolint() or "MISSING"))
    for name in base_images():
        rows.append(_image_row(cli, "base", name, baseimage.recipe_hash(baseimage.suite_for(name))
                               if baseimage.is_base(name) else ""))
    for item in standins.stand_ins():
        rows.append(_image_row(cli, "stand-in", item.name, item.hash))
    rpid, spid = registry.pid(), sshd.pid()
    rows.append(("registry", bool(rpid and registry.answers()),
                 f"up on {paths.REGISTRY} (pid {rpid}, user {paths.REGISTRY_USER})" if rpid else "DOWN"))
    rows.append(("sshd", bool(spid and sshd.answers()),
                 f"up on 127.0.0.1:{paths.SSH_PORT} (pid {spid}, key {paths.SSH_KEY})" if spid else "DOWN"))
    swarm = swarm_state(cli) if cli else "unknown"
    mine = " (initialized by the lab)" if st["swarm_initialized"] else ""
    rows.append(("swarm", swarm == "active", f"{swarm}{mine}"))
    if cli is not None:
        from invoke import Context

        from deploy.core.runner import Runner

        rows.append(acme.status_row(Runner(ctx=Context(), echo=False), acme.lab_spec(LAB_ID)))
        rows.append(s3.status_row(Runner(ctx=Context(), echo=False), s3.lab_spec(LAB_ID)))
    return rows


def _which_hadolint() -> str:
    try:
        return host.hadolint()
    except ToolkitError:
        return ""


def _image_row(cli, kind: str, name: str, want: str):
    labels = standins.image_labels(cli, name) if cli else None
    if labels is None:
        return (f"{kind} {name}", False, "MISSING")
    current = labels.get(paths.HASH_LABEL) == want
    return (f"{kind} {name}", True, "present" + ("" if current else " (not from the current recipe: rebuilt by lab.up)"))


def down(runner, say=print) -> None:
    """Remove what this lab made (per its state file) and nothing else."""
    st = state.load()
    if paths.LAB_DIR.resolve() in (Path("/"), Path.home().resolve()):
        raise ToolkitError(f"refusing to remove {paths.LAB_DIR}; set DJDEPLOY_LAB_DIR to the lab's own directory")
    if not paths.LAB_DIR.exists():
        say(f"nothing to do: {paths.LAB_DIR} does not exist")
        return
    registry.stop(runner)
    sshd.stop(runner)
    cli = _client()
    if cli is not None:
        flt = f"{paths.LABEL}={LAB_ID}"
        for kind in ("container", "network", "volume"):
            found = runner.run(["docker", kind, "ls", "-q", *(["-a"] if kind == "container" else []),
                                "--filter", f"label={flt}"], hide=True).stdout.split()
            if found:
                runner.run(["docker", kind, "rm", *(["-f"] if kind != "network" else []), *found])
        if st["swarm_initialized"]:
            runner.run(["docker", "swarm", "leave", "--force"])
        for image in st["images"]:
            if (standins.image_labels(cli, image) or {}).get(paths.LABEL) == LAB_ID:
                out = runner.run(["docker", "image", "rm", image], check=False, hide=True)
                if not out.ok:
                    say(f"kept {image}: {out.stderr.strip()}")
    if st["compose_plugin"] and os.path.islink(st["compose_plugin"]):
        runner.run(["rm", "-f", st["compose_plugin"]])
    if st["engine_started"] and paths.ENGINE_PIDFILE.exists():
        procs.stop(runner, paths.ENGINE_PIDFILE, "dockerd", grace=30)
    runner.run(["rm", "-rf", str(paths.LAB_DIR)])
    say(f"lab at {paths.LAB_DIR} removed")
