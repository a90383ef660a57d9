"""The image's HEALTHCHECK: GET /health/ on 127.0.0.1:8000 with an allowed Host; exit 0 only on 200 "ok".

Standard library only (no curl in the image). The Host comes from DJANGO_ALLOWED_HOSTS, so uWSGI's Host rule
(which answers 400 to anything else) never locks the health check out.
"""

import os
import sys
import urllib.request

from djdeploy_django import env


def main():
    try:
        host = env.health_host(env.allowed_hosts())
    except env.EnvError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    port = os.environ.get("HEALTHCHECK_PORT", "8000")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/health/", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=float(os.environ.get("HEALTHCHECK_TIMEOUT", "2.5"))) as resp:
            body = resp.read(16)
            ok = resp.status == 200 and body == b"ok"
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
