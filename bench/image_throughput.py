"""Benchmark: requests/s of a database page and of a hashed static file, uWSGI (the product image as configured)
vs gunicorn (+ WhiteNoise for static files) on the same image, worker count and Postgres, side by side with wrk.

Usage: python bench/image_throughput.py [--image djapp:latest] [--rounds 3] [--seconds 10] [--connections 16]
Only 127.0.0.1 is targeted; everything created is labelled djdeploy.bench=image and removed.
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import time
import uuid
from pathlib import Path

from image_common import ROOT, LABEL, app_env, cleanup, get, median, run_app, wait_200

from deploy.core import engine
from deploy.image import builder

HERE = Path(__file__).resolve().parent / "image_gunicorn"


def build_gunicorn(cli, app_ref):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("Dockerfile", "requirements.lock", "bench_settings.py"):
            tar.add(HERE / name, arcname=name)
        ca = builder.ca_bundle()
        if ca:
            tar.add(ca, arcname=builder.CA_NAME)
    buf.seek(0)
    tag = "djapp-bench:gunicorn"
    for chunk in cli.api.build(fileobj=buf, custom_context=True, tag=tag, rm=True, decode=True,
                               buildargs={"APP_IMAGE": app_ref}, labels=LABEL):
        if "error" in chunk:
            raise SystemExit(chunk["error"])
    return tag


def wrk(port, path, seconds, connections):
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.+)", out)
    return rps, int(errors.group(1)) if errors else 0, socket_errors.group(1) if socket_errors else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="djapp:latest")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    cli = engine.client(timeout=1200)
    cleanup(cli)
    gunicorn_ref = build_gunicorn(cli, args.image)
    net = cli.networks.create(f"djbench-{uuid.uuid4().hex[:6]}", labels=LABEL)
    pw = secrets.token_hex(8)
    pg = cli.containers.run("postgres:17-trixie", detach=True, name=f"djbench-pg-{uuid.uuid4().hex[:6]}",
                            network=net.name, labels=LABEL,
                            environment={"POSTGRES_USER": "app", "POSTGRES_PASSWORD": pw, "POSTGRES_DB": "notes"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pg.reload()
            if pg.attrs["State"].get("Health", {}).get("Status") == "healthy":
                break
            time.sleep(0.3)
        env = app_env(DATABASE_URL=f"postgres://app:{pw}@{pg.name}:5432/notes", DJANGO_MANAGEPY_MIGRATE="on")
        servers = {}
        for name, ref in (("uwsgi", args.image), ("gunicorn", gunicorn_ref)):
            c, port = run_app(cli, ref, env, network=net.name)
            wait_200(port, timeout=90, container=c)
            servers[name] = (c, port)
        seed = servers["uwsgi"][1]
        # 20 notes on the page (CSRF-exempt path not available: insert through the ORM in a one-off container)
        cli.containers.run(args.image, ["python", "manage.py", "shell", "-c",
                                        "from notes.models import Note; Note.objects.bulk_create("
                                        "[Note(text=f'note {i}') for i in range(20)])"],
                           environment=env, network=net.name, labels=LABEL, remove=True)
        page = get(seed, "/", host="localhost")[2].decode()
        css = re.search(r"/static/notes/app\.[0-9a-f]{12}\.css", page).group(0)
        for name, (c, port) in servers.items():
            for path in ("/", css):  # warm up, and check both serve 200
                assert get(port, path)[0] == 200, (name, path)
                wrk(port, path, 2, args.connections)
        results = {(n, p): [] for n in servers for p in ("page", "static")}
        for rnd in range(args.rounds):
            for label, path in (("page", "/"), ("static", css)):
                line = []
                for name, (c, port) in servers.items():
                    rps, non2xx, sock = wrk(port, path, args.seconds, args.connections)
                    results[(name, label)].append(rps)
                    line.append(f"{name} {rps:8.0f} req/s (non-2xx {non2xx}{', socket errors ' + sock if sock else ''})")
                ratio = results[("uwsgi", label)][-1] / results[("gunicorn", label)][-1]
                print(f"round {rnd + 1} {label:6}: " + " | ".join(line) + f" | uwsgi/gunicorn {ratio:.2f}x", flush=True)
        for label in ("page", "static"):
            u, g = median(results[("uwsgi", label)]), median(results[("gunicorn", label)])
            ratios = [a / b for a, b in zip(results[("uwsgi", label)], results[("gunicorn", label)])]
            print(f"median {label}: uwsgi {u:.0f} req/s, gunicorn {g:.0f} req/s, median ratio {median(ratios):.2f}x")
    finally:
        cleanup(cli)
        try:
            cli.images.remove("djapp-bench:gunicorn")
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    main()
