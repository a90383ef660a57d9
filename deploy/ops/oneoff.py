"""`inv shell --env ENV` / `inv manage --env ENV -- ARGS`: a one-off container of the image ENV runs.

Steps: read the app service's spec on the manager (image, environment, secrets); upload the secrets it
mounts as files (mode 0444 inside a 0700 directory under REMOTE_DIR, bind-mounted read-only at the same
/run/secrets paths, so the container sees exactly what a task sees); then become
``ssh [-t] manager sh -c '...docker run --rm ...'``: with a terminal, ``-t`` and ``docker run -it`` give a
real TTY (Ctrl-C, resize); without one it is scripted (stdin passes through). The exit code is the
container's. A trap on the manager removes the container and the secrets directory on exit, hangup or
interrupt. Never migrates (DJANGO_MANAGEPY_MIGRATE=off). DJANGO_SUPERUSER_* variables of this process go
in through an uploaded env file (never argv), so `createsuperuser --noinput` works without echoing them.
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import sys

from deploy.core.errors import ToolkitError
from deploy.core.runner import quote

FORWARDED = ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_EMAIL", "DJANGO_SUPERUSER_PASSWORD")
FORCED_ENV = {"DJANGO_MANAGEPY_MIGRATE": "off", "DJANGO_MANAGEPY_COLLECTSTATIC": "off"}
CLEANUP = ('n="$1"; d="$2"; shift 2; trap \'docker rm -f "$n" >/dev/null 2>&1; rm -rf "$d"\' EXIT; '
           'trap "exit 129" HUP; trap "exit 130" INT; trap "exit 143" TERM; '
           'docker "$@"; rc=$?; exit "$rc"')


def spec_cmd(cfg) -> list:
    from deploy.ship import stackfile

    return ["docker", "service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec}}",
            stackfile.service(cfg, "app")]


def parse_spec(text: str) -> tuple[str, dict, list]:
    """(image without digest, environment, [secret file names]) from the ContainerSpec JSON."""
    spec = json.loads(text)
    image = spec.get("Image", "").partition("@")[0]
    env = dict(item.split("=", 1) for item in spec.get("Env") or [] if "=" in item)
    targets = [s.get("File", {}).get("Name") or s.get("SecretName", "") for s in spec.get("Secrets") or []]
    return image, env, [t for t in targets if t]


def secret_files(cfg, targets: list) -> dict:
    """The values of the secrets the service mounts, by file name (from the environment's config)."""
    from deploy.ship import stackfile

    values = stackfile.secret_values(cfg)
    unknown = [t for t in targets if t not in values]
    if unknown:
        raise ToolkitError(f"the app service of {cfg.env} mounts secrets this toolkit does not know ({', '.join(unknown)}); "
                           f"redeploy with `inv deploy --env {cfg.env}`")
    return {t: values[t] for t in targets}


def forwarded(environ: dict) -> dict:
    return {k: environ[k] for k in FORWARDED if environ.get(k)}


def docker_args(cfg, image: str, env: dict, files: list, workdir: str, tty: bool, command: list,
                env_file: bool) -> list:
    """The `docker run` arguments (after `docker`) of the one-off container."""
    from deploy.ship import stackfile, swarm

    argv = ["--config", swarm.paths(cfg).docker_config, "run", "--rm", "-i"] + (["-t"] if tty else [])
    argv += ["--network", stackfile.network(cfg), "--label", f"djdeploy.stack={cfg.stack_name}",
             "--label", "djdeploy.role=oneoff"]
    for name in files:
        argv += ["--volume", f"{workdir}/{name}:/run/secrets/{name}:ro"]
    for key, value in {**env, **FORCED_ENV}.items():
        argv += ["--env", f"{key}={value}"]
    if env_file:
        argv += ["--env-file", f"{workdir}/env"]
    return argv + [image] + list(command)


def remote_command(name: str, workdir: str, args: list) -> str:
    """The shell text ssh runs on the manager: docker run under the cleanup trap."""
    return quote(["sh", "-c", CLEANUP, "oneoff", name, workdir] + args)


def ssh_argv(cfg, remote: str, tty: bool) -> list:
    return ["ssh", "-t" if tty else "-T", "-p", str(cfg.ssh_port), "-i", cfg.ssh_key, "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={cfg.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(cfg.connect_timeout)}",
            "-o", "LogLevel=ERROR", f"{cfg.ssh_user}@{cfg.manager_host}", remote]


def prepare(cfg, run, command: list, tty: bool, environ: dict) -> list:
    """Read the service spec, upload the secret files; return the ssh argv to exec."""
    from deploy.ship import stackfile, swarm

    res = run.run(spec_cmd(cfg), hide=True, check=False, timeout=cfg.command_timeout)
    if not res.ok:
        raise ToolkitError(f"{stackfile.service(cfg, 'app')} does not run on {cfg.manager_host}; "
                           f"deploy first with `inv deploy --env {cfg.env}`")
    image, env, targets = parse_spec(res.stdout)
    files = secret_files(cfg, targets)
    extra = forwarded(environ)
    run.add_secrets(*extra.values())
    name = f"{cfg.stack_name}_oneoff_{pysecrets.token_hex(4)}"
    workdir = f"{swarm.paths(cfg).dir}/{name}"
    run.run(["mkdir", "-p", "-m", "0700", workdir], hide=True, timeout=30)
    for fname, value in files.items():
        run.put(value, f"{workdir}/{fname}", mode=0o444)  # readable by the image's uid; the dir is root's 0700
    if extra:
        run.put("".join(f"{k}={v}\n" for k, v in extra.items()), f"{workdir}/env", mode=0o600)
    args = docker_args(cfg, image, env, list(files), workdir, tty, command, bool(extra))
    # --name goes right after `run`, so the trap can remove exactly this container.
    at = args.index("run") + 1
    args[at:at] = ["--name", name]
    return ssh_argv(cfg, remote_command(name, workdir, args), tty)


def exec_in_env(env: str, command: list, tty: bool, environ=None) -> None:
    """Validate, prepare over Fabric, then become ssh: the terminal and the exit code pass through."""
    from deploy.ship import config, ssh

    environ = os.environ if environ is None else environ
    cfg = config.load(env)
    if shutil.which("ssh") is None:
        raise ToolkitError("the OpenSSH client (ssh) is not installed; install openssh-client")
    run = ssh.remote_runner(cfg, out=sys.stderr)
    try:
        argv = prepare(cfg, run, command, tty, environ)
    finally:
        run.ctx.close()
    sys.stderr.write(f"[local] $ {run.describe(argv)}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os.execvp(argv[0], argv)
