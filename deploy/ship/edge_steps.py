"""The edge's steps of a deploy: the edge image, the app's trusted-proxy subnet, and the certificate wait.

``wait_certs`` runs after the base deploy (db, proxy, certs) and BEFORE the migration and any app change: it
polls the certs service's status until it serves a valid certificate for exactly this deploy's configuration
(``edge_stack.config_id``). A CA that refuses (failed validation, rate limit) or cannot be reached fails the
deploy with the CA's reason; the proxies keep serving the certificate they have.
"""

from __future__ import annotations

import hashlib
import json
import time

from deploy.core.errors import ToolkitError
from deploy.core.runner import quote
from deploy.ship import edge_image, edge_stack, plan, stackfile, swarm
from deploy.ship.wait import POLL, quiet


def image_steps(cfg) -> list:
    """Build and push the edge image when the registry lacks its recipe's tag (a local step, before SSH work)."""
    if not cfg.proxy:
        return []
    return [plan.Step(plan.BUILD, plan.LOCAL, f"the edge image {edge_image.ref(cfg)} unless the registry has it",
                      detail=f"FROM {cfg.proxy_image}, deploy/ship/edge (tag = hash of the recipe)",
                      action=ensure_image)]


def ensure_image(job, step) -> str:
    return edge_image.ensure(job.cfg, out=job.out)


def certs_steps(cfg, proxy_text: str) -> list:
    """After the base deploy (db, proxy, certs), before the migration: with TLS at the proxy, wait for a valid
    certificate; always, wait until every proxy runs this deploy's configuration."""
    if not cfg.proxy:
        return []
    certs, proxies = edge_stack.certs_status_cmd(cfg), edge_stack.proxies_status_cmd(cfg)
    want = proxy_config_id(proxy_text)
    steps = [plan.poll(f"until every proxy runs the proxy configuration {want} (a seamless reload: no proxy task "
                       f"is replaced)", wait_proxies, want,
                       detail=f"poll `{quote(proxies)}` up to {cfg.converge_timeout:g}s")]
    if cfg.tls:
        steps.insert(0, plan.poll(f"until {stackfile.service(cfg, 'certs')} serves a valid certificate for this "
                                  f"configuration (a CA refusal fails here, before any app change)", wait_certs,
                                  detail=f"poll `{quote(certs)}` up to {cfg.converge_timeout:g}s"))
    return steps


def proxy_config_id(proxy_text: str) -> str:
    """What the proxies report once they run this haproxy.cfg (edge_sync: sha256 of the text, 16 hex digits)."""
    return hashlib.sha256(proxy_text.encode()).hexdigest()[:16]


def proxies_verdict(cfg, want: str, status: dict | None, running: int) -> tuple[str, str]:
    """Pure: ('wait'|'ok', message) from the certs service's status and the number of running proxy tasks.
    A proxy counts when it reported in the last three sync intervals (plus 5 s)."""
    if not status or status.get("proxy_config") != want:
        return "wait", f"the certs service does not serve configuration {want} yet"
    fresh = {n: p for n, p in (status.get("proxies") or {}).items()
             if p.get("age", 1e9) <= 3 * cfg.cert_sync_interval + 5}
    done = sorted(n for n, p in fresh.items() if p.get("config") == want)
    if running and len(done) >= running:
        return "ok", f"{len(done)} of {running} proxies run configuration {want}"
    others = ", ".join(f"{n} runs {p.get('config') or 'its start configuration'}" for n, p in sorted(fresh.items())
                       if p.get("config") != want)
    return "wait", f"{len(done)} of {running} proxies run configuration {want}" + (f" ({others})" if others else "")


def wait_proxies(job, step) -> str:
    cfg, ask, want = job.cfg, quiet(job.manager), step.args[0]
    deadline, message, polls = time.monotonic() + cfg.converge_timeout, "no status yet", 0
    while time.monotonic() < deadline:
        polls += 1
        res = ask.run(edge_stack.proxies_status_cmd(cfg), hide=True, check=False, timeout=30)
        head, _, body = res.stdout.partition("\n") if res.ok else ("", "", "")
        state, message = proxies_verdict(cfg, want, parse_status(body), int(head) if head.strip().isdigit() else 0)
        if state == "ok":
            return f"{polls} polls; {message}"
        time.sleep(POLL)
    raise ToolkitError(f"timed out after {cfg.converge_timeout:g}s waiting for the proxies to load the new proxy "
                       f"configuration ({message}); nothing was rolled out; see `docker service logs "
                       f"{stackfile.service(cfg, 'proxy')}`")


def trusted_proxy_steps(cfg) -> list:
    """The app trusts X-Forwarded-Proto from the stack network's subnet only (written to its env_file)."""
    if not cfg.proxy or cfg.django_trusted_proxy:
        return []
    return [plan.run("write the stack network's subnet as the app's DJANGO_TRUSTED_PROXY",
                     edge_stack.trusted_proxy_cmd(cfg, stackfile.network(cfg)))]


FAILURES = 2   # consecutive failed orders (the certs service retries after ACME_RETRY_MIN) that fail the deploy


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
    if status.get("error") and status.get("failures", 1) >= FAILURES:
        what = cfg.acme_directory if cfg.tls_mode == "acme" else "the certificate files"
        return "fail", (f"no valid certificate for {','.join(edge_stack.cert_names(cfg))} from {what}: "
                        f"{status['error']}")
    if status.get("error"):
        return "wait", f"the certs service retries after: {status['error']}"
    return "wait", "the certs service is getting its first certificate"


def wait_certs(job, step) -> str:
    """Poll the certs service until it serves a valid certificate for this configuration. Failed attempts that
    were there before this deploy (a redeploy after fixing DNS or the CA) do not fail it: the certs service is
    asked to retry now, and only an attempt after that counts."""
    cfg, run = job.cfg, job.manager
    cmd, certs = edge_stack.certs_status_cmd(cfg), stackfile.service(cfg, 'certs')
    ask, deadline, message, polls = quiet(run), time.monotonic() + cfg.converge_timeout, "no status yet", 0
    counted = None   # attempts before the retry we asked for; None: not asked
    while time.monotonic() < deadline:
        polls += 1
        res = ask.run(cmd, hide=True, check=False, timeout=30)
        status = parse_status(res.stdout) if res.ok else None
        state, message = verdict(cfg, status)
        if state in ("ok", "warn"):
            job.out.write(f"  {certs}: {'warning: ' if state == 'warn' else ''}{message}\n")
            return f"{polls} polls; {message}"
        if state == "fail" and counted is None:
            counted = status.get("attempts", 0)
            job.out.write(f"  {certs}: its earlier attempts failed ({status['error']}); asking it to retry now\n")
            ask.run(edge_stack.certs_retry_cmd(cfg), hide=True, check=False, timeout=30)
        elif state == "fail" and status.get("attempts", 0) > counted:
            raise ToolkitError(f"{message}; nothing was rolled out: {cfg.env} keeps serving the previous version "
                               f"(and its certificate); see `docker service logs {certs}`")
        time.sleep(POLL)
    raise ToolkitError(f"timed out after {cfg.converge_timeout:g}s waiting for a certificate ({message}); nothing was "
                       f"rolled out; see `docker service logs {certs}`")
