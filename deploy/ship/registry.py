"""The registry side of shipping: reachability, tag lookup (HTTP API v2) and push (Docker SDK).

The password travels in an HTTP Authorization header or in the SDK's X-Registry-Auth header:
never in argv, never printed. Loopback registries speak plain HTTP (Docker allows that without
TLS); any other registry is reached over HTTPS.
"""

from __future__ import annotations

import base64
import sys
import urllib.error
import urllib.request

from deploy.core.errors import ToolkitError

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


def base_url(registry: str) -> str:
    host = registry.rsplit(":", 1)[0]
    scheme = "http" if host in ("127.0.0.1", "localhost", "[::1]") else "https"
    return f"{scheme}://{registry}"


def request(cfg, path: str, method: str = "GET", timeout: float = 5.0):
    """One authenticated Registry API v2 request (Accept: every manifest type); raises urllib's errors."""
    req = urllib.request.Request(base_url(cfg.registry) + path, method=method)
    token = base64.b64encode(f"{cfg.registry_user}:{cfg.registry_password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    req.add_header("Accept", MANIFEST_TYPES)
    return urllib.request.urlopen(req, timeout=timeout)


def check(cfg, timeout: float = 5.0) -> None:
    """Raise ToolkitError unless the registry answers and accepts the credentials."""
    try:
        with request(cfg, "/v2/", timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ToolkitError(f"registry {cfg.registry} refused the credentials of user {cfg.registry_user!r}; "
                               f"check REGISTRY_USER / REGISTRY_PASSWORD in {cfg.source}") from None
        raise ToolkitError(f"registry {cfg.registry} answered HTTP {exc.code} on /v2/; check REGISTRY in {cfg.source}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ToolkitError(f"registry {cfg.registry} is not reachable ({reason}); start it or fix REGISTRY in "
                           f"{cfg.source} (this repository's test lab: `inv lab.up --deploy`). Nothing was changed on the manager") from None


def manifest_digest(cfg, tag: str) -> str | None:
    """The digest of ``<repository>:<tag>`` in the registry, or None when the tag does not exist."""
    try:
        with request(cfg, f"/v2/{cfg.app_image}/manifests/{tag}", method="HEAD") as resp:
            return resp.headers.get("Docker-Content-Digest") or ""
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ToolkitError(f"registry {cfg.registry} answered HTTP {exc.code} for {cfg.app_image}:{tag}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ToolkitError(f"registry {cfg.registry} is not reachable ({getattr(exc, 'reason', exc)}); "
                           f"start it or fix REGISTRY in {cfg.source}") from None


def require_tag(cfg, tag: str) -> str:
    """The digest of an existing tag; an unknown tag is refused (nothing is changed)."""
    digest = manifest_digest(cfg, tag)
    if digest is None:
        raise ToolkitError(f"unknown image tag {tag!r}: {cfg.image_ref(tag)} is not in the registry; "
                           f"push it first (`inv push --env {cfg.env}`) or pick a tag that was deployed (`inv audit --env {cfg.env}`)")
    return digest


def push(cfg, local_ref: str, tag: str, out=sys.stdout) -> str:
    """Tag ``local_ref`` as ``<registry>/<app_image>:<tag>``, push it through the SDK, return the digest."""
    from docker.errors import APIError, ImageNotFound

    from deploy.core.engine import client

    cli = client()
    try:
        try:
            image = cli.images.get(local_ref)
        except ImageNotFound:
            raise ToolkitError(f"no local image {local_ref}; build it first (`inv build`)") from None
        image.tag(cfg.repository, tag)
        auth = {"username": cfg.registry_user, "password": cfg.registry_password}
        digest, seen = "", {}
        try:
            for msg in cli.api.push(cfg.repository, tag=tag, auth_config=auth, stream=True, decode=True):
                if "error" in msg:
                    raise ToolkitError(f"push of {cfg.image_ref(tag)} failed: {msg['error'].strip()}; "
                                       f"check the registry ({cfg.registry}) and its credentials")
                digest = (msg.get("aux") or {}).get("Digest", digest)
                layer, status = msg.get("id"), msg.get("status", "")
                if layer and status and seen.get(layer) != status and not status.startswith("Pushing"):
                    seen[layer] = status
                    out.write(f"  {layer}: {status}\n")
                elif layer and status.startswith("Pushing") and layer not in seen:
                    seen[layer] = status
                    out.write(f"  {layer}: Pushing {msg.get('progressDetail', {}).get('total', '')}\n".rstrip() + "\n")
        except APIError as exc:
            raise ToolkitError(f"push of {cfg.image_ref(tag)} failed: {exc.explanation or exc}") from None
        except OSError as exc:
            raise ToolkitError(f"push of {cfg.image_ref(tag)} failed: {exc}") from None
        out.flush()
        return digest
    finally:
        cli.close()
