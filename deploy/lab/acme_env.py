"""The lab's ACME CA as seen by a deploy: an overlay network the certs service joins, and the CA's roots on disk.

The certs service runs in the Swarm stack; the lab's Pebble runs as a plain container on its own bridge network.
``connect`` creates an attachable overlay network (labelled) and attaches Pebble to it, so the stack's certs
service reaches ``https://<pebble container>:14000/dir`` (ACME_NETWORK), and writes two files: Pebble's API root
(ACME_CA_ROOT_FILE: to trust the directory's HTTPS) and the root that signs the issued certificates
(HEALTH_CA_FILE, and what a browser or curl must trust: ``curl --cacert <dir>/ca-root.pem https://djlab.test:8443/``).
Pebble makes a new root at every start: run `python -m deploy.lab.deploy_env` again after one.
HTTP-01 reaches the stack's proxy because challtestsrv answers every name with this host's address on the
Pebble network, where the proxy's host-mode HTTP port (AcmeSpec.http_port, 8080 in the lab) listens.
"""

from __future__ import annotations

from pathlib import Path

from deploy.lab import acme


def overlay_name(spec: acme.AcmeSpec) -> str:
    return f"{spec.prefix}-acme-overlay"


def overlay_create_argv(spec: acme.AcmeSpec) -> list[str]:
    return ["docker", "network", "create", "--driver", "overlay", "--attachable",
            *[a for key, value in spec.labels for a in ("--label", f"{key}={value}")], overlay_name(spec)]


def env_values(spec: acme.AcmeSpec, files_dir: Path) -> dict[str, str]:
    """Pure: the env keys that point a deploy at this Pebble."""
    return {"TLS_MODE": "acme", "ACME_DIRECTORY": f"https://{spec.pebble}:{acme.API_PORT}/dir",
            "ACME_EMAIL": "lab@djdeploy.test", "ACME_CA_ROOT_FILE": str(files_dir / "api-root.pem"),
            "ACME_NETWORK": overlay_name(spec), "HEALTH_CA_FILE": str(files_dir / "ca-root.pem")}


def connect(runner, spec: acme.AcmeSpec, files_dir: Path) -> dict[str, str]:
    """Make the overlay network (once), attach Pebble to it (once), write the roots; return the env values."""
    net = overlay_name(spec)
    if not runner.run(["docker", "network", "inspect", net], check=False, hide=True).ok:
        runner.run(overlay_create_argv(spec), hide=True)
    attached = runner.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", spec.pebble],
                          hide=True).stdout
    if f'"{net}"' not in attached:
        runner.run(acme.connect_argv(spec, net), hide=True)
    files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    root, _ = acme.ca_pems(runner, spec)
    (files_dir / "api-root.pem").write_text(acme.api_root_pem(runner, spec))
    (files_dir / "ca-root.pem").write_text(root)
    return env_values(spec, files_dir)


def disconnect(runner, spec: acme.AcmeSpec) -> None:
    """Detach Pebble and remove the overlay network (tests; the lab's own stays)."""
    runner.run(acme.disconnect_argv(spec, overlay_name(spec)), check=False, hide=True)
    runner.run(["docker", "network", "rm", overlay_name(spec)], check=False, hide=True)
