"""The edge's steps of a deploy: the edge image, the app's trusted-proxy subnet, and the certificate wait.

``wait_certs`` runs after the base deploy (db, proxy, certs) and BEFORE the migration and any app change: it
polls the certs service's status until it serves a valid certificate for exactly this deploy's configuration
(``edge_stack.config_id``). A CA that refuses (failed validation, rate limit) or cannot be reached fails the
deploy with the CA's reason; the proxies keep serving the certificate they have.
"""

from __future__ import annotations

import json
import time

from deploy.core.errors import ToolkitError
from deploy.ship import edge_image, edge_stack, swarm
from deploy.ship.wait import POLL, _quiet, note


def prepare_image(cfg, local, out) -> str:
    """Build and push the edge image if the registry lacks its recipe's tag; return its ref."""
    ref = edge_image.ref(cfg)
    note(local, f"ensure the edge image {ref} is in the registry (built FROM {cfg.proxy_image} when missing)")
    return ref if local.dry_run else edge_image.ensure(cfg, out=out)


def trusted_proxy(cfg, run) -> None:
    """The app trusts X-Forwarded-Proto from the stack network's subnet only (written to its env_file)."""
    if cfg.proxy and not cfg.django_trusted_proxy:
        run.run(edge_stack.trusted_proxy_cmd(cfg, swarm.network(cfg)), hide=True, timeout=cfg.command_timeout)


def parse_status(text: str) -> dict | None:
    try:
        status = json.loads(text)
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


def verdict(cfg, status: dict | None) -> tuple[str, str]:
    """Pure: ('wait'|'ok'|'warn'|'fail', message) for one status reading of the certs service."""
    want = edge_stack.config_id(cfg)
    if not status or status.get("config_id") != want:
        return "wait", "the certs service has not started this configuration yet"
    names = ",".join(status.get("names") or []) or "-"
    if status.get("valid"):
        if status.get("error"):
            return "warn", (f"serving certificate serial {status.get('serial')} ({names}); its renewal is failing "
                            f"and is retried: {status['error']}")
        return "ok", f"serving certificate serial {status.get('serial')} ({names})"
    if status.get("error"):
        what = cfg.acme_directory if cfg.tls_mode == "acme" else "the certificate files"
        return "fail", (f"no valid certificate for {','.join(edge_stack.cert_names(cfg))} from {what}: "
                        f"{status['error']}")
    return "wait", "the certs service is getting its first certificate"


def wait_certs(cfg, run) -> None:
    cmd = edge_stack.certs_status_cmd(cfg)
    note(run, f"wait until {swarm.service(cfg, 'certs')} serves a valid certificate for this configuration "
              f"(poll `{run.describe(cmd)}`, up to {cfg.converge_timeout:g}s); a CA refusal fails here, before any "
              f"app change")
    if run.dry_run:
        return
    quiet, deadline, message = _quiet(run), time.monotonic() + cfg.converge_timeout, "no status yet"
    while time.monotonic() < deadline:
        res = quiet.run(cmd, hide=True, check=False, timeout=30)
        state, message = verdict(cfg, parse_status(res.stdout) if res.ok else None)
        if state in ("ok", "warn"):
            run.out.write(f"  {swarm.service(cfg, 'certs')}: {'warning: ' if state == 'warn' else ''}{message}\n")
            return
        if state == "fail":
            raise ToolkitError(f"{message}; nothing was rolled out: {cfg.env} keeps serving the previous version "
                               f"(and its certificate); see `docker service logs {swarm.service(cfg, 'certs')}`")
        time.sleep(POLL)
    raise ToolkitError(f"timed out after {cfg.converge_timeout:g}s waiting for a certificate ({message}); nothing was "
                       f"rolled out; see `docker service logs {swarm.service(cfg, 'certs')}`")
