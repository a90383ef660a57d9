#!/bin/sh
# Entrypoint of the edge image. `haproxy ...` (the proxy service): put the current certificate (or a self-signed
# placeholder while the certs service has none) where haproxy.cfg expects it, then run HAProxy in master-worker
# mode; its `program certsync` keeps the certificate current in the running process. Anything else (e.g.
# `edge-agent certs ...` for the certs service) runs as given.
set -eu
if [ "${1:-}" = "haproxy" ]; then
    mkdir -p -m 0700 /tmp/edge
    edge-agent prepare --from "${CERTS_URL:-http://tasks.certs:8081/bundle}" --cert /tmp/edge/site.pem
fi
exec "$@"
