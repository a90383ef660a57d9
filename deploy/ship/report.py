"""What a deploy prints: the plan (numbered steps), each step as it starts, the per-step timing table, and
one-line errors for the Docker SDK, SSH and network failures a step can meet. Secrets are redacted."""

from __future__ import annotations

from deploy.core.runner import redact


def step_line(number: int, total: int, step, secrets=()) -> str:
    """The line printed as a step starts."""
    return redact(f"step {number}/{total} {step.line()}", secrets)


def plan_text(the_plan, secrets=()) -> str:
    """``plan: N steps (...)`` then one numbered line per step: exactly what a real run executes."""
    lines = [f"plan: {len(the_plan.steps)} steps ({the_plan.title}; state: {the_plan.state.describe()})"]
    lines += [redact(f"{n:>3}. {step.line()}", secrets) for n, step in enumerate(the_plan.steps, 1)]
    return "\n".join(lines) + "\n"


def table_rows(rows: list[dict]) -> list[str]:
    """Rows of {n, where, kind, what, seconds, result, note} as aligned lines."""
    lines = [f"{'step':>4}  {'seconds':>8}  {'result':<6}  what"]
    for r in rows:
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(f"{r['n']:>4}  {r['seconds']:>8.2f}  {r['result']:<6}  [{r['where']}] {r['kind']} {r['what']}{note}")
    return lines


def table_text(records, title: str, seconds: float, planned: int) -> str:
    rows = [r.as_dict() for r in records]
    lines = [f"step timings: {title} ({len(rows)} of {planned} steps ran, {seconds:.1f}s)"] + table_rows(rows)
    return "\n".join(lines) + "\n"


def stored_table(data: dict) -> str:
    """The timing table of a stored deploy record (``inv audit --env ENV --last``)."""
    total = sum(r["seconds"] for r in data["steps"])
    head = (f"step timings: {data['action']} of {data['image']}@{data['digest']} to {data['env']} at {data['when']} "
            f"({data['tree']} tree): {data['result']} ({total:.1f}s in the steps before the final audit step)")
    return "\n".join([head] + table_rows(data["steps"])) + "\n"


def failure_line(job, number: int, total: int, step, exc: BaseException) -> str | None:
    """One line for an SDK, SSH or network error in a step (None: not one of those, let it raise)."""
    cfg = job.cfg
    where = f"step {number}/{total} ({step.what})"
    text = short(exc)
    if _is_docker_error(exc):
        return (f"{where} failed: Docker engine error ({text}); check the engine (`docker info`) and the registry "
                f"{cfg.registry}, then rerun `inv deploy --env {cfg.env}`")
    if step.where == "manager" and is_ssh_error(exc):
        from deploy.ship.ssh import target

        return (f"{where}: SSH connection to {target(cfg)} failed during the {job.release.action} ({text}); "
                f"check `inv status --env {cfg.env}`; if a deploy lock remains, `inv unlock --env {cfg.env}`")
    if isinstance(exc, (OSError, EOFError)):
        return f"{where} failed: {text}; check the network and the registry {cfg.registry}, then rerun"
    return None


def short(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


def _is_docker_error(exc) -> bool:
    try:
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, DockerException)


def is_ssh_error(exc) -> bool:
    import paramiko

    return isinstance(exc, (OSError, EOFError, paramiko.SSHException))
