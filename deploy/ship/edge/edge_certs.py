"""edge-agent certs: the ACME client (or the user's files) and the HTTP server of the certs service."""

import datetime
import hashlib
import http.server
import json
import os
import threading
import time

from edge_common import UTC, cert_info, digest, fetch, log, write_atomic

TOKENS = {}          # HTTP-01 token path -> key authorization
LOCK = threading.Lock()


class Certs:
    """The certs service's state: the current bundle (in memory and on the volume) and the status."""

    def __init__(self, args):
        self.args, self.dir = args, args.state
        self.names = sorted(n for n in args.names.split(",") if n)
        self.bundle, self.info, self.error, self.failures, self.origin = "", None, "", 0, ""
        self.attempts, self.wake = 0, threading.Event()   # orders finished; set by POST /retry: retry now
        # Where the bundle came from: the ACME directory that issued it, or "files".
        self.want_origin = args.directory if args.mode == "acme" else "files"
        self.proxy_cfg, self.proxies = "", {}   # haproxy.cfg for the proxies; what each proxy last reported
        if getattr(args, "haproxy_cfg", ""):
            with open(args.haproxy_cfg) as fh:
                self.proxy_cfg = fh.read()
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "bundle.pem")
        if os.path.exists(path):
            origin = os.path.join(self.dir, "origin")
            with open(path) as fh, open(origin) if os.path.exists(origin) else open(os.devnull) as oh:
                self.set_bundle(fh.read(), oh.read().strip(), save=False)

    def set_bundle(self, bundle, origin, save=True):
        with LOCK:
            self.bundle, self.info, self.origin = bundle, cert_info(bundle), origin
        if save:
            write_atomic(os.path.join(self.dir, "bundle.pem"), bundle)
            write_atomic(os.path.join(self.dir, "origin"), origin + "\n")
        self.save_status()

    def valid(self):
        """A current certificate of this configuration: unexpired, every name, from the configured source (a
        certificate of another CA or of the user's files keeps serving, but a new one is ordered)."""
        info = self.info
        return bool(info and info["not_after"] > time.time() and set(self.names) <= set(info["names"])
                    and self.origin == self.want_origin)

    def renew_at(self):
        info = self.info
        return info["not_after"] - (info["not_after"] - info["not_before"]) / 3

    def report(self, headers):
        """A proxy's fetch says which configuration and certificate it runs (edge_sync: X-Edge-* headers)."""
        name = headers.get("X-Edge-Proxy")
        if name:
            with LOCK:
                self.proxies[name[:64]] = {"config": headers.get("X-Edge-Config", "")[:16],
                                           "serial": headers.get("X-Edge-Serial", "")[:64], "seen": time.time()}

    def live_status(self):
        """status.json plus the proxies heard from in the last minute (config id, serial, seconds since)."""
        with open(os.path.join(self.dir, "status.json")) as fh:
            status = json.load(fh)
        now = time.time()
        with LOCK:
            status["proxies"] = {n: dict(p, age=round(now - p["seen"], 1)) for n, p in self.proxies.items()
                                 if now - p["seen"] < 60}
        status["proxy_config"] = digest(self.proxy_cfg) if self.proxy_cfg else ""
        return status

    def save_status(self):
        status = {"config_id": self.args.config_id, "source": self.args.mode, "wanted": self.names,
                  "valid": self.valid(), "error": self.error, "failures": self.failures, "attempts": self.attempts,
                  "state": "ok" if self.valid() else ("error" if self.error else "pending"), **(self.info or {})}
        if self.info:
            status["fingerprint"] = hashlib.sha256(self.bundle.split("-----END CERTIFICATE-----")[0].encode()).hexdigest()
        write_atomic(os.path.join(self.dir, "status.json"), json.dumps(status, sort_keys=True) + "\n", 0o644)


def serve(certs, port):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.startswith("/.well-known/acme-challenge/"):
                body = TOKENS.get(self.path)
                return self.reply(200 if body else 404, body or "unknown token\n", "text/plain")
            certs.report(self.headers)
            if self.path == "/haproxy.cfg":
                return self.versioned(certs.proxy_cfg, "text/plain", "no proxy configuration\n")
            if self.path == "/bundle":
                with LOCK:
                    bundle = certs.bundle
                return self.versioned(bundle, "application/x-pem-file", "no certificate yet\n")
            if self.path == "/status":
                return self.reply(200, json.dumps(certs.live_status(), sort_keys=True) + "\n", "application/json")
            self.reply(404, "not found\n", "text/plain")

        def do_POST(self):  # noqa: N802 - `edge-agent retry` (docker exec in this container): no backoff wait
            if self.path != "/retry" or self.client_address[0] != "127.0.0.1":
                return self.reply(404, "not found\n", "text/plain")
            certs.wake.set()
            self.reply(202, "retrying now\n", "text/plain")

        def versioned(self, body, ctype, missing):
            """``body`` with an ETag (its sha256): 304 when the client has it, 503 when there is none."""
            if not body:
                return self.reply(503, missing, "text/plain")
            etag = '"' + hashlib.sha256(body.encode()).hexdigest() + '"'
            if self.headers.get("If-None-Match") == etag:
                return self.reply(304, "", "text/plain", etag)
            return self.reply(200, body, ctype, etag)

        def reply(self, code, body, ctype, etag=None):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            if etag:
                self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def acme_account(args, state_dir):
    """A registered account on the CA (the key lives on the volume; the CA returns the existing account)."""
    import josepy as jose
    from acme import client, errors, messages
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = os.path.join(state_dir, "account-key.pem")
    if not os.path.exists(path):
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        write_atomic(path, pem)
    with open(path, "rb") as fh:
        key = jose.JWKEC(key=serialization.load_pem_private_key(fh.read(), password=None))
    verify = args.ca_root or True
    net = client.ClientNetwork(key, alg=jose.ES256, user_agent="djdeploy-edge", verify_ssl=verify)
    acme = client.ClientV2(client.ClientV2.get_directory(args.directory, net), net=net)
    reg = messages.NewRegistration.from_data(email=args.email or None, terms_of_service_agreed=True)
    try:
        acme.new_account(reg)
    except errors.ConflictError as exc:  # this key already has an account: use it
        net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
    return acme, key


def order(certs, args):
    """One ACME order for certs.names through HTTP-01; returns the bundle (chain + new key)."""
    from acme import challenges, crypto_util
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    acme, key = acme_account(args, certs.dir)
    pkey = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    orderr = acme.new_order(crypto_util.make_csr(pkey, certs.names))
    paths = []
    try:
        for authz in orderr.authorizations:
            chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
            response, validation = chall.response_and_validation(key)
            TOKENS[chall.chall.path] = validation
            paths.append(chall.chall.path)
            through_proxy(args, chall.chall.path, validation)
            acme.answer_challenge(chall, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=args.order_timeout)
        fullchain = acme.poll_and_finalize(orderr, deadline=deadline).fullchain_pem
    finally:
        for p in paths:
            TOKENS.pop(p, None)
    return fullchain.rstrip("\n") + "\n" + pkey.decode()


def through_proxy(args, path, validation, wait=30.0):
    """Before the CA asks: wait until a proxy serves the token (a proxy that just started may not route yet)."""
    if not args.proxy_url:
        return
    deadline, last = time.monotonic() + wait, ""
    while time.monotonic() < deadline:
        try:
            body, _ = fetch(args.proxy_url.rstrip("/") + path, timeout=2)
            if body == validation:
                return
            last = "wrong answer"
        except Exception as exc:  # noqa: BLE001
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    log("WARNING", f"the proxies do not serve the challenge token yet ({last}); asking the CA anyway")


def reason(exc):
    """The CA's reason in one line (failed validation, rate limit, unreachable CA ...)."""
    from acme import errors, messages

    if isinstance(exc, errors.ValidationError):
        details = [f"{c.error.typ}: {c.error.detail}" for a in exc.failed_authzrs for c in a.body.challenges
                   if c.error is not None]
        return "validation failed: " + ("; ".join(details) or "no detail")
    if isinstance(exc, messages.Error):
        return f"{exc.typ}: {exc.detail}"
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:400]


def run_certs(args):
    certs = Certs(args)
    serve(certs, args.port)
    if args.mode == "external":   # TLS ends before the stack: only the proxies' configuration is served
        certs.save_status()
        log("INFO", "serving the proxies' configuration (TLS_MODE=external: no certificate here)")
        while True:
            time.sleep(3600)
    if args.mode == "files":
        with open(args.cert_file) as c, open(args.key_file) as k:
            certs.set_bundle(c.read().rstrip("\n") + "\n" + k.read(), "files")
        log("INFO", f"serving the provided certificate serial={certs.info['serial']} names={','.join(certs.info['names'])}")
        while True:
            time.sleep(3600)
    certs.save_status()
    while True:
        if certs.valid() and time.time() < certs.renew_at():
            time.sleep(max(0.5, min(certs.renew_at() - time.time(), 30)))
            continue
        what = "renewal" if certs.valid() else "first certificate" if not certs.info else "new certificate"
        try:
            log("INFO", f"ordering a certificate for {','.join(certs.names)} from {args.directory} ({what})")
            certs.set_bundle(order(certs, args), args.directory)
            certs.error, certs.failures, certs.attempts = "", 0, certs.attempts + 1
            certs.save_status()
            log("INFO", f"new certificate serial={certs.info['serial']} valid until "
                        f"{datetime.datetime.fromtimestamp(certs.info['not_after'], UTC):%Y-%m-%dT%H:%M:%SZ}")
        except Exception as exc:  # noqa: BLE001 - every failure is logged and retried
            certs.failures, certs.attempts = certs.failures + 1, certs.attempts + 1
            certs.error = reason(exc)
            certs.save_status()
            delay = min(args.retry_min * 2 ** (certs.failures - 1), args.retry_max)
            still = "the current certificate keeps serving" if certs.info and certs.info["not_after"] > time.time() \
                else "no valid certificate yet"
            log("ERROR", f"{what} failed (attempt {certs.failures}): {certs.error}; {still}; retrying in {delay:g}s")
            if certs.wake.wait(delay):   # a deploy asked for a retry now (the cause may be fixed)
                log("INFO", "retrying now: asked by a deploy (edge-agent retry)")
            certs.wake.clear()
