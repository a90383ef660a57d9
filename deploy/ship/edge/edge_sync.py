"""edge-agent sync / prepare: keep the running HAProxy's certificate AND configuration current.

- the certificate: installed into the running process through the admin socket (`set ssl cert` + `commit`);
- the configuration (haproxy.cfg, rendered by the deploy and served by the certs service): checked with
  `haproxy -c`, the backends' server state saved (addresses and health: the new worker routes from its first
  request), then a master-worker reload (SIGUSR2 to the master, this program's parent). The new worker takes the
  listening sockets over from the old one (`expose-fd listeners`), the old one finishes its requests: no refused
  connection, no restart of the container. A configuration that fails the check is logged and never loaded.
Every fetch tells the certs service which configuration and certificate this proxy runs (X-Edge-* headers): the
deploy waits until every live proxy runs the deploy's configuration.
"""

import datetime
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

from edge_common import UTC, cert_info, digest, fetch, log, write_atomic


def admin(sock_path, command):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock_path)
        s.sendall(command.encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def install(args, bundle):
    """Install ``bundle`` into the running HAProxy (a transaction on the admin socket), then on disk."""
    out = admin(args.socket, f"set ssl cert {args.cert} <<\n{bundle.strip()}\n\n")
    if "Transaction" not in out:
        raise RuntimeError(f"set ssl cert: {out.strip()}")
    out = admin(args.socket, f"commit ssl cert {args.cert}\n")
    if "Success" not in out:
        raise RuntimeError(f"commit ssl cert: {out.strip()}")
    write_atomic(args.cert, bundle)


def check_config(path):
    """`haproxy -c`: '' when the file is valid, else HAProxy's own complaint (its ALERT lines)."""
    res = subprocess.run(["haproxy", "-W", "-c", "-f", path], capture_output=True, text=True, timeout=60)
    if res.returncode == 0:
        return ""
    lines = [ln.strip() for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    return " | ".join([ln for ln in lines if "ALERT" in ln] or lines)[:600] or f"exit {res.returncode}"


def put_config(args, text, failed, save_state=False):
    """Put ``text`` at --config if `haproxy -c` accepts it (first saving a running proxy's server state when
    ``save_state``); else log ``failed`` with HAProxy's complaint, keep the file as it was and return False."""
    new = f"{args.config}.new"
    write_atomic(new, text, 0o644)
    problem = check_config(new)
    if problem:
        os.unlink(new)
        log("ERROR", f"{failed}: {problem}")
        return False
    if save_state and args.state_file:   # the running proxy's servers, for the new worker
        write_atomic(args.state_file, admin(args.socket, "show servers state\n"), 0o644)
    os.replace(new, args.config)
    return True


def reload_config(args, text):
    """Put ``text`` in place (checked, server state saved) and reload the master. False if it failed the check."""
    if not put_config(args, text, "configsync: the new configuration fails `haproxy -c`, the running one stays",
                      save_state=True):
        return False
    log("INFO", f"configsync: reloading the proxy with configuration {digest(text)} (seamless)")
    # The master re-executes itself, starts a new worker and a new sync program, and stops this one.
    os.kill(os.getppid(), signal.SIGUSR2)
    return True


def sync_once(args, seen):
    """One round: the configuration first (a reload re-reads the certificate from disk), then the certificate."""
    report = {"X-Edge-Proxy": socket.gethostname(), "X-Edge-Config": seen["config"], "X-Edge-Serial": seen["serial"]}
    if args.config_from:
        text, etag = fetch(args.config_from, seen["config_etag"], headers=report)
        if text is not None and etag != seen["config_etag"]:
            seen["config_etag"] = etag
            if reload_config(args, text):
                seen["config"] = digest(text)
    if not args.source:   # TLS_MODE=external: no certificate at this proxy
        return
    bundle, etag = fetch(args.source, seen["cert_etag"], headers=report)
    if bundle is not None and etag != seen["cert_etag"]:
        install(args, bundle)
        seen["cert_etag"], seen["serial"] = etag, cert_info(bundle)["serial"]
        log("INFO", f"certsync: installed certificate serial={seen['serial']} into the running proxy")


def _leave(signum, frame):
    """SIGUSR1 from the master (the proxy's soft stop, or a reload): exit 0. Python's default for SIGUSR1 is to
    die of it, and the master answers a current program dying of a signal with `exit-on-failure`: SIGTERM to the
    worker, whose kept-alive connections were then cut instead of finished (a proxy replaced start-first)."""
    sys.exit(0)


def run_sync(args):
    signal.signal(signal.SIGUSR1, _leave)
    seen = {"config_etag": "", "cert_etag": "", "serial": "", "config": ""}
    if args.config_from and os.path.exists(args.config):   # what `prepare` started this proxy with
        with open(args.config) as fh:
            text = fh.read()
        seen["config_etag"], seen["config"] = f'"{hashlib.sha256(text.encode()).hexdigest()}"', digest(text)
    while True:
        try:
            sync_once(args, seen)
        except Exception as exc:  # noqa: BLE001 - keep serving the current certificate, try again
            log("WARNING", f"sync: {type(exc).__name__}: {exc} (serving serial={seen['serial'] or 'placeholder'}, "
                           f"configuration {seen['config'] or 'as started'})")
        time.sleep(args.interval)


def placeholder():
    """A self-signed certificate for the few seconds before the real one is installed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "djdeploy placeholder")])
    now = datetime.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode() + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def prepare_config(args):
    """The proxy's configuration from the certs service, waiting for it up to --wait seconds (first deploy: the
    certs service starts at the same time). Without it the proxy cannot start: exit, Swarm restarts the task."""
    deadline, last = time.monotonic() + args.wait, ""
    while True:
        try:
            text, _ = fetch(args.config_from, timeout=2)
            if put_config(args, text, f"prepare: the configuration from {args.config_from} fails `haproxy -c`"):
                return
            last = "it fails `haproxy -c`"
        except Exception as exc:  # noqa: BLE001
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise SystemExit(f"edge-agent prepare: no usable configuration from {args.config_from} after "
                             f"{args.wait:g}s ({last}); is the certs service running?")
        time.sleep(1)


def predecessor_state(args):
    """The server state of the proxy this one replaces on the node (relay mode: --handoff, its operator socket on
    the shared volume), or None when there is none. Saved at --state-file, HAProxy starts from it
    (`load-server-state-from-file`): the app's servers known and UP from the first request, no DNS wait."""
    if not args.handoff or not os.path.exists(args.handoff):
        return None
    try:
        state = admin(args.handoff, "show servers state\n")
    except OSError:
        return None   # a socket file left by a proxy that is gone: nothing to hand over
    if args.state_file and state.startswith("1"):   # the format version line
        write_atomic(args.state_file, state, 0o644)
    return state


def run_prepare(args):
    os.makedirs(os.path.dirname(args.cert), mode=0o700, exist_ok=True)
    handover = predecessor_state(args) is not None
    if handover:
        log("INFO", "prepare: a running proxy serves this node; starting from its servers' state")
    if args.source:
        prepare_cert(args, wait=args.wait if handover else 0)
    if args.config_from:
        prepare_config(args)


def prepare_cert(args, wait=0):
    """The current certificate from the certs service, else a placeholder. With a predecessor serving (``wait``),
    the placeholder is never needed: the certs service (replaced in the same update) is awaited up to ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        try:
            bundle, _ = fetch(args.source, timeout=2)
            log("INFO", f"prepare: starting with certificate serial={cert_info(bundle)['serial']}")
            break
        except Exception as exc:  # noqa: BLE001
            if time.monotonic() < deadline:
                time.sleep(1)
                continue
            bundle = placeholder()
            log("INFO", f"prepare: no certificate from {args.source} yet ({type(exc).__name__}); "
                        "starting with a placeholder")
            break
    write_atomic(args.cert, bundle)   # before the configuration check: its bind line loads this file
