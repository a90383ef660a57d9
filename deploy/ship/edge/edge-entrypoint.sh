#!/bin/sh
# Entrypoint of the edge image. `haproxy ...` (the proxy service): put the current certificate (or a self-signed
# placeholder while the certs service has none) and the configuration from the certs service (CONFIG_URL; else
# the image's /usr/local/etc/haproxy/haproxy.cfg) where the command expects them, then run HAProxy in
# master-worker mode (EDGE_HANDOFF: the socket of the proxy it replaces on this node, see edge_sync.run_prepare);
# its `program certsync` keeps both current in the running process (a new configuration is a seamless reload). Anything else (e.g. `edge-agent certs ...` for the certs service) runs as given.
set -eu
if [ "${1:-}" = "haproxy" ]; then
    mkdir -p -m 0700 /tmp/edge
    [ -n "${CONFIG_URL:-}" ] || cp /usr/local/etc/haproxy/haproxy.cfg /tmp/edge/haproxy.cfg
    edge-agent prepare --from "${CERTS_URL:-}" --cert /tmp/edge/site.pem \
        --config-from "${CONFIG_URL:-}" --config /tmp/edge/haproxy.cfg --handoff "${EDGE_HANDOFF:-}"
fi
exec "$@"
