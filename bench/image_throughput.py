"""Benchmark: requests/s of a database page and of a hashed static file, uWSGI (the product image as configured)
vs gunicorn (+ WhiteNoise for static files) on the same image, worker count and Postgres, side by side with wrk.

Besides the shipped configuration, the same run measures uWSGI variants that test why static files were slower
than expected (issue 13): the previous static map (headers, then sendfile), offload threads, keep-alive off,
an abstract unix socket between router and workers, two router processes. Every round runs every server once,
in the same order, so each round's ratios compare servers under the same machine load. A one-connection
keep-alive probe per server shows the delayed-ACK stall (latency p50/p90 on a single connection).

With --proxy, the shipped uWSGI and gunicorn are also measured through the stack's front proxy (haproxy:3.0-trixie
with the repository's haproxy.cfg, one in front of each), as rows "proxy:uwsgi" and "proxy:gunicorn". With --relay
as well (implies --proxy), through the host-mode relay in front of those proxies too (deploy/ship/edge_relay.py:
TCP HAProxy, unix socket, PROXY protocol v2), as rows "relay:uwsgi" and "relay:gunicorn".

Usage: python bench/image_throughput.py [--image djapp:latest] [--rounds 5] [--seconds 8] [--connections 16]
                                        [--variants all|none|NAME,...] [--proxy] [--relay]
                                        [--via netns|published]
Needs wrk (apt-get install wrk) and, with --via netns (the default), nsenter and root: wrk then runs in each
server container's network namespace against that container's 127.0.0.1, so the lab engine's userland proxy
(docker-proxy, which carries every request to a published 127.0.0.1 port) is not measured; --via published
measures through the published ports as before. Only 127.0.0.1 is targeted; everything created is labelled djdeploy.bench=image
and removed.
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import time
import uuid
from pathlib import Path

from image_common import LABEL, app_env, cleanup, get, median, run_app, wait_200

from deploy.core import engine
from deploy.image import builder

HERE = Path(__file__).resolve().parent / "image_gunicorn"
PROXY_CFG = HERE.parent.parent / "deploy/ship/proxy/haproxy.cfg"   # the stack's front proxy configuration
CSS_RE = re.compile(r"/static/notes/app\.[0-9a-f]{12}\.css")
# The image before issue 13: the static map serves hashed files; `env uwsgi` makes the entrypoint skip its routes.
STATIC_MAP = {"_command": ["env", "uwsgi"], "UWSGI_DISABLE_LOGGING": "1", "UWSGI_LOG_4XX": "1", "UWSGI_LOG_5XX": "1",
              "UWSGI_STATIC_EXPIRES_URI": r"^/static/.*\.[0-9a-f]{12}\.[A-Za-z0-9]+$ 31536000"}
VARIANTS = {  # name: environment overrides of the shipped configuration (same image, same 2 workers)
    "staticmap": STATIC_MAP,
    "staticmap+nokeepalive": {**STATIC_MAP, "UWSGI_HTTP_KEEPALIVE": "0"},
    "staticmap+offload1": {**STATIC_MAP, "UWSGI_OFFLOAD_THREADS": "1"},
    "shipped+offload1": {"UWSGI_OFFLOAD_THREADS": "1"},
    "shipped+unixsocket": {"UWSGI_SOCKET": "@djapp-workers"},
    "shipped+2routers": {"UWSGI_HTTP_PROCESSES": "2"},
    "shipped+tmpsocket": {"UWSGI_SOCKET": "/tmp/djapp-workers.sock"},
    "shipped+tmpsocket+2routers": {"UWSGI_SOCKET": "/tmp/djapp-workers.sock", "UWSGI_HTTP_PROCESSES": "2"},
}


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


# published port -> (container's pid, port inside it): with --via netns (the default), wrk runs in the server
# container's network namespace (nsenter) against its own 127.0.0.1, instead of through the published port.
INNER: dict = {}
VIA = {"mode": "netns"}


def wrk_argv(port, path, seconds, connections, threads=2) -> list[str]:
    """The wrk command for the server published on ``port``: through docker-proxy (--via published) or from
    inside its network namespace, still to 127.0.0.1 (the lab engine's userland proxy costs every request a
    copy through a Go process on this 2-core machine, a cost production traffic does not pay)."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if VIA["mode"] == "netns" and port in INNER:
        pid, inner = INNER[port]
        return ["nsenter", "-t", str(pid), "-n"] + argv + [f"http://127.0.0.1:{inner}{path}"]
    return argv + [f"http://127.0.0.1:{port}{path}"]


def serving(container, port, inner):
    """Record where wrk reaches ``container`` (published on ``port``, listening on ``inner``) from inside."""
    container.reload()
    INNER[port] = (container.attrs["State"]["Pid"], inner)


def wrk(port, path, seconds, connections, threads=2):
    """(requests/s, non-2xx count, socket errors text, latency percentiles {50: ms, 90: ms})."""
    out = subprocess.run(wrk_argv(port, path, seconds, connections, threads), capture_output=True, text=True,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.+)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    lat = {int(p): float(v) * scale[u] for p, v, u in re.findall(r"^\s+(50|90)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
    return rps, int(errors.group(1)) if errors else 0, socket_errors.group(1) if socket_errors else "", lat


def start_postgres(cli, net):
    pw = secrets.token_hex(8)
    pg = cli.containers.run("postgres:17-trixie", detach=True, name=f"djbench-pg-{uuid.uuid4().hex[:6]}",
                            network=net.name, labels=LABEL,
                            environment={"POSTGRES_USER": "app", "POSTGRES_PASSWORD": pw, "POSTGRES_DB": "notes"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pg.reload()
        if pg.attrs["State"].get("Health", {}).get("Status") == "healthy":
            return f"postgres://app:{pw}@{pg.name}:5432/notes"
        time.sleep(0.3)
    raise SystemExit("postgres did not become healthy within 120 s")


def start_servers(cli, args, net, env, gunicorn_ref):
    """{name: port}: the shipped image, gunicorn, then each variant (migrate runs once, in the first)."""
    wanted = list(VARIANTS) if args.variants == "all" else [] if args.variants == "none" else args.variants.split(",")
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    plan = [("uwsgi", args.image, {"DJANGO_MANAGEPY_MIGRATE": "on"}), ("gunicorn", gunicorn_ref, {})]
    plan += [(f"uwsgi:{v}", args.image, VARIANTS[v]) for v in wanted]
    servers = {}
    for name, ref, extra in plan:
        extra = dict(extra)
        command = extra.pop("_command", None)
        # the alias is what Swarm's DNS answers for a service's tasks (the proxy finds the app by it)
        endpoint = {net.name: cli.api.create_endpoint_config(aliases=[f"tasks.{name}"])} if ":" not in name else None
        c, port = run_app(cli, ref, {**env, **extra}, network=net.name, networking_config=endpoint,
                          **({"command": command} if command else {}))
        wait_200(port, timeout=90, container=c)
        servers[name] = port
        serving(c, port, 8000)
        if name == "uwsgi":  # 20 notes on the page, through the ORM in a one-off container
            cli.containers.run(args.image, ["python", "manage.py", "shell", "-c",
                                            "from notes.models import Note; Note.objects.bulk_create("
                                            "[Note(text=f'note {i}') for i in range(20)])"],
                               environment=env, network=net.name, labels=LABEL, remove=True)
    return servers


def start_proxies(cli, net, servers):
    """HAProxy with the stack's configuration in front of uwsgi and gunicorn: {"proxy:NAME": port}."""
    proxies = {}
    for name in ("uwsgi", "gunicorn"):
        proxies[f"proxy:{name}"] = haproxy(cli, net, PROXY_CFG.read_text(), proxy_env(name), publish=True)
    return proxies


def proxy_env(app: str) -> dict:
    return {"APP_SERVICE": app, "APP_SLOTS": "1", "HEALTH_HOST": "localhost"}


def haproxy(cli, net, cfg_text: str, env: dict, publish=False, **kw):
    """HAProxy (the stack's PROXY_IMAGE) with ``cfg_text`` as its configuration. With ``publish``: its port 8080
    on a free 127.0.0.1 port, returned once it answers; else the container."""
    from image_common import free_port

    port = free_port() if publish else None
    c = cli.containers.run("haproxy:3.0-trixie", ["sh", "-c", 'printf "%s" "$CFG" > /tmp/h.cfg && exec haproxy '
                                                  '-db -f /tmp/h.cfg'],
                           detach=True, network=net.name, labels=LABEL, environment=dict(env, CFG=cfg_text),
                           ports={"8080/tcp": ("127.0.0.1", port)} if publish else None, **kw)
    if not publish:
        return c
    wait_200(port, timeout=60)
    serving(c, port, 8080)
    return port


def start_relays(cli, net, servers):
    """The relay (edge_relay.render) in front of a proxy that also binds the relay's unix socket: {"relay:NAME": port}.
    Both share a volume, as in the stack; the proxy's configuration gets the stack's extra bind line."""
    from types import SimpleNamespace

    from deploy.ship import edge_relay

    src = PROXY_CFG.read_text()
    relayed = src.replace("    bind :8080\n", "    bind :8080\n    bind unix@%s mode 666 accept-proxy\n"
                          % edge_relay.HTTP_SOCKET, 1)
    assert relayed != src, "the proxy's frontend has no `bind :8080` line"
    relay_cfg = edge_relay.render(SimpleNamespace(published_port=8080, tls=False, https_port=0))
    relays = {}
    for name in ("uwsgi", "gunicorn"):
        vol = cli.volumes.create(f"djbench-sockets-{name}-{uuid.uuid4().hex[:6]}", labels=LABEL)
        sockets = {vol.name: {"bind": edge_relay.SOCKET_DIR, "mode": "rw"}}
        haproxy(cli, net, relayed, proxy_env(name), volumes=sockets)
        relays[f"relay:{name}"] = haproxy(cli, net, relay_cfg, {}, publish=True, user="root", volumes=sockets)
    return relays


def fmt(name, rps, non2xx, sock):
    return (f"{name} {rps:.0f}" + (f" (non-2xx {non2xx})" if non2xx else "")
            + (f" (socket errors {sock})" if sock else ""))


def measure(servers, paths, args):
    """Every round: page (uwsgi, gunicorn), then static (every server); print each round as it ends."""
    results = {(n, label): [] for label in paths for n in servers}
    for rnd in range(1, args.rounds + 1):
        for label, path in paths.items():
            names = ["uwsgi", "gunicorn"] if label == "page" else list(servers)
            line = []
            for name in names:
                rps, non2xx, sock, _ = wrk(servers[name], path, args.seconds, args.connections)
                results[(name, label)].append(rps)
                line.append(fmt(name, rps, non2xx, sock))
            last = {name: values[-1] for (name, lab), values in results.items() if lab == label and values}
            extra = (f", through the proxy {last['proxy:uwsgi'] / last['proxy:gunicorn']:.2f}x"
                     if "proxy:uwsgi" in last else "")
            if "relay:uwsgi" in last:
                extra += (f", through the relay {last['relay:uwsgi'] / last['relay:gunicorn']:.2f}x"
                          f" (relay/proxy uwsgi {last['relay:uwsgi'] / last['proxy:uwsgi']:.2f})")
            print(f"round {rnd} {label:6}: " + " | ".join(line) +
                  f" | uwsgi/gunicorn {last['uwsgi'] / last['gunicorn']:.2f}x{extra}", flush=True)
    return {k: v for k, v in results.items() if v}


def report(results, servers):
    print("\nmedians (ratio = median of the per-round ratios to gunicorn in the same round):")
    for label in ("page", "static"):
        for name in servers:
            values = results.get((name, label))
            if values:
                prefix = name.split(":")[0] + ":" if name.startswith(("proxy:", "relay:")) else ""
                base = results[(prefix + "gunicorn", label)]
                ratios = [a / b for a, b in zip(values, base)]
                print(f"  {label:6} {name:28} median {median(values):7.0f} req/s  ratio {median(ratios):5.2f}x  "
                      f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})")


def one_connection_probe(servers, path):
    print("\none keep-alive connection, 3 s each (wrk -t1 -c1): the delayed-ACK stall shows as p90 ~40 ms")
    for name, port in servers.items():
        rps, _, _, lat = wrk(port, path, 3, 1, threads=1)
        print(f"  {name:28} {rps:7.0f} req/s  p50 {lat.get(50, 0):6.2f} ms  p90 {lat.get(90, 0):6.2f} ms", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="djapp:latest")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--variants", default="all", help="all, none, or a comma list of: " + ", ".join(VARIANTS))
    ap.add_argument("--proxy", action="store_true", help="also measure uwsgi and gunicorn through the stack's HAProxy")
    ap.add_argument("--relay", action="store_true", help="also through the host-mode relay in front of that HAProxy "
                    "(implies --proxy)")
    ap.add_argument("--via", choices=("netns", "published"), default="netns",
                    help="netns: wrk in each server container's network namespace, to its 127.0.0.1 (default); "
                    "published: through the published 127.0.0.1 port (the engine's docker-proxy in between)")
    args = ap.parse_args()
    VIA["mode"] = args.via
    cli = engine.client(timeout=1200)
    cleanup(cli)
    gunicorn_ref = build_gunicorn(cli, args.image)
    net = cli.networks.create(f"djbench-{uuid.uuid4().hex[:6]}", labels=LABEL)
    try:
        env = app_env(DATABASE_URL=start_postgres(cli, net))
        servers = start_servers(cli, args, net, env, gunicorn_ref)
        if args.proxy or args.relay:
            servers.update(start_proxies(cli, net, servers))
        if args.relay:
            servers.update(start_relays(cli, net, servers))
        css = CSS_RE.search(get(servers["uwsgi"], "/", host="localhost")[2].decode()).group(0)
        paths = {"page": "/", "static": css}
        for name, port in servers.items():
            for path in paths.values():  # warm up, and check every server serves both with 200
                assert get(port, path)[0] == 200, (name, path)
                wrk(port, path, 1, args.connections)
        results = measure(servers, paths, args)
        report(results, servers)
        one_connection_probe(servers, css)
    finally:
        cleanup(cli)
        try:
            cli.images.remove("djapp-bench:gunicorn")
        except Exception:  # noqa: BLE001 - best effort
            pass


if __name__ == "__main__":
    main()
