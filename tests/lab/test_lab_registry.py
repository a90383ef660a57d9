"""The lab registry: basic auth required; a push and a pull through the Docker SDK work with it."""

from __future__ import annotations

import base64
import io
import json
import secrets
import urllib.error
import urllib.request

import pytest

from labhelpers import TEST_LABEL
from deploy.lab import paths

pytestmark = pytest.mark.lab


def _get(path, auth=None, method="GET", headers=None):
    request = urllib.request.Request(f"http://{paths.REGISTRY}{path}", method=method, headers=headers or {})
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _creds():
    return paths.REGISTRY_USER, paths.registry_password()


def test_password_file_is_private_and_auth_is_required():
    assert paths.REGISTRY_PASSWORD_FILE.stat().st_mode & 0o777 == 0o600
    assert _get("/v2/_catalog")[0] == 401
    assert _get("/v2/_catalog", auth=(paths.REGISTRY_USER, "wrong"))[0] == 401
    assert _get("/v2/_catalog", auth=_creds())[0] == 200


def _stream_errors(lines):
    return [line.get("error") or line.get("errorDetail") for line in lines if "error" in line or "errorDetail" in line]


def test_push_and_pull_with_auth_through_the_sdk(docker_client, request):
    tag = secrets.token_hex(4)
    repo = f"{paths.REGISTRY}/djdeploy-test/lab-push"
    ref = f"{repo}:{tag}"
    dockerfile = f"FROM {'debian:trixie-slim'}\nRUN echo {tag} > /marker\n".encode()
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=ref, labels=TEST_LABEL, rm=True)
    user, password = _creds()

    def cleanup():
        status, headers, _ = _get(f"/v2/djdeploy-test/lab-push/manifests/{tag}", auth=_creds(), method="HEAD",
                                  headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        if status == 200:
            _get(f"/v2/djdeploy-test/lab-push/manifests/{headers['Docker-Content-Digest']}", auth=_creds(),
                 method="DELETE")
        for name in (ref, image.id):
            try:
                docker_client.images.remove(name, force=True)
            except Exception:
                pass
    request.addfinalizer(cleanup)

    refused = list(docker_client.images.push(repo, tag=tag, stream=True, decode=True,
                                             auth_config={"username": user, "password": "wrong-" + password}))
    assert _stream_errors(refused), refused
    pushed = list(docker_client.images.push(repo, tag=tag, stream=True, decode=True,
                                            auth_config={"username": user, "password": password}))
    assert not _stream_errors(pushed), pushed
    status, _, body = _get(f"/v2/djdeploy-test/lab-push/tags/list", auth=_creds())
    assert status == 200 and tag in json.loads(body)["tags"]

    docker_client.images.remove(ref)
    pulled = docker_client.images.pull(repo, tag=tag, auth_config={"username": user, "password": password})
    assert pulled.id == image.id
