"""Fabric to the Swarm manager: strict host keys, a timeout on every wait, one-line errors.

Fabric's Connection accepts unknown host keys by default (AutoAddPolicy) and loads the user's
known_hosts. A deploy tool must not: the client here trusts only the environment's KNOWN_HOSTS and
rejects anything else (paramiko RejectPolicy), before any remote command runs.
"""

from __future__ import annotations

import socket

from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner


def target(cfg) -> str:
    return f"{cfg.ssh_user}@{cfg.manager_host}:{cfg.ssh_port}"


def connection(cfg):
    """An unopened Fabric Connection with strict host key checking and timeouts."""
    import paramiko
    from fabric import Config, Connection

    t = cfg.connect_timeout
    config = Config(overrides={"load_ssh_configs": False, "timeouts": {"connect": t}})
    conn = Connection(
        cfg.manager_host, user=cfg.ssh_user, port=cfg.ssh_port, config=config, connect_timeout=t,
        connect_kwargs={"key_filename": [cfg.ssh_key], "look_for_keys": False, "allow_agent": False,
                        "banner_timeout": t, "auth_timeout": t, "channel_timeout": t})
    client = paramiko.SSHClient()
    client.load_host_keys(cfg.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client = client  # replaces Fabric's AutoAddPolicy client
    return conn


def open_connection(cfg):
    """Open the connection or raise ToolkitError saying what failed and what to do."""
    import paramiko

    conn = connection(cfg)
    where, t = target(cfg), cfg.connect_timeout
    try:
        conn.open()
        conn.transport.set_keepalive(15)
    except paramiko.BadHostKeyException:
        raise ToolkitError(f"SSH host key of {where} does not match {cfg.known_hosts} (changed key: possible "
                           f"man-in-the-middle); verify the new key, then update KNOWN_HOSTS. No remote command ran") from None
    except paramiko.AuthenticationException:
        raise ToolkitError(f"SSH authentication as {cfg.ssh_user} on {where} failed with key {cfg.ssh_key}; "
                           f"check SSH_USER and SSH_KEY in {cfg.source}") from None
    except paramiko.ssh_exception.NoValidConnectionsError:
        raise ToolkitError(f"SSH connection to {where} refused; is sshd running there? Check MANAGER_HOST/SSH_PORT "
                           f"in {cfg.source}") from None
    except (socket.timeout, TimeoutError):
        raise ToolkitError(f"SSH connect to {where} timed out after {t:g}s; check MANAGER_HOST/SSH_PORT and the "
                           f"network") from None
    except paramiko.SSHException as exc:
        text = str(exc)
        if "not found in known_hosts" in text:
            raise ToolkitError(f"SSH host key of {where} is not in {cfg.known_hosts}; add the manager's key there "
                               f"(verified out of band). No remote command ran") from None
        transport = conn.client.get_transport()
        if "banner" in text.lower() or not getattr(transport, "remote_version", ""):  # it never said "SSH-2.0-..."
            raise ToolkitError(f"SSH banner from {where} not received within {t:g}s; is that port an SSH server?") from None
        raise ToolkitError(f"SSH to {where} failed: {text}") from None
    except OSError as exc:
        raise ToolkitError(f"SSH connection to {where} failed: {exc.strerror or exc}") from None
    return conn


def remote_runner(cfg, dry_run: bool = False, out=None, history=None) -> Runner:
    """A Runner on the manager (no connection at all in a dry run)."""
    import sys

    conn = None if dry_run else open_connection(cfg)
    runner = Runner(ctx=conn, where=f"{cfg.ssh_user}@{cfg.manager_host}", secrets=tuple(cfg.secrets),
                    dry_run=dry_run, out=out or sys.stdout)
    if history is not None:
        runner.history = history
    return runner
