"""A test-side ACME client (certbot's `acme` library) and a tiny HTTP-01 responder, for the lab CA tests."""

from __future__ import annotations

import datetime
import http.server
import tempfile
import threading

import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class Responder:
    """Serves /.well-known/acme-challenge/<token> from ``tokens`` on (host, port); every request is recorded."""

    def __init__(self, host: str, port: int):
        self.tokens: dict[str, str] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                outer.requests.append(f"{self.headers.get('Host')} {self.path}")
                body = outer.tokens.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write((body or "not found").encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def acme_client(directory_url: str, api_root_pem: str) -> tuple[client.ClientV2, jose.JWK]:
    """A registered account on the CA at ``directory_url`` (its HTTPS API trusted through ``api_root_pem``)."""
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    bundle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    bundle.write(api_root_pem)
    bundle.close()
    net = client.ClientNetwork(key, alg=jose.ES256, user_agent="djdeploy-lab-test", verify_ssl=bundle.name)
    acme = client.ClientV2(client.ClientV2.get_directory(directory_url, net), net=net)
    acme.new_account(messages.NewRegistration.from_data(email="lab@example.org", terms_of_service_agreed=True))
    return acme, key


def issue(acme: client.ClientV2, key: jose.JWK, names: list[str], responder: Responder, wrong: bool = False,
          timeout: float = 60) -> str:
    """Order a certificate for ``names``, answer HTTP-01 through ``responder``; return the full chain PEM.
    ``wrong`` serves a key authorization for another token (the CA must refuse it)."""
    pkey = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    order = acme.new_order(crypto_util.make_csr(pkey, names))
    for authz in order.authorizations:
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = chall.response_and_validation(key)
        if wrong:
            validation = "not-" + validation
        responder.tokens[chall.chall.path] = validation
        acme.answer_challenge(chall, response)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
    return acme.poll_and_finalize(order, deadline=deadline).fullchain_pem


def failure_details(exc: errors.ValidationError) -> list[str]:
    """The CA's reasons from a failed order: every failed challenge's error detail."""
    return [f"{c.error.typ}: {c.error.detail}" for authzr in exc.failed_authzrs
            for c in authzr.body.challenges if c.error is not None]
