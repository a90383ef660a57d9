#!/bin/bash
# Start sshd, the registry forwarder and dockerd; stop the node as soon as any of them exits.
# Environment (set by deploy.lab.cluster_plan.run_argv):
#   NODE_CGROUP_PARENT  cgroup parent of the node's containers (unique per node, e.g. /djlab-c-node1)
#   REGISTRY_UPSTREAM   host:port of the lab registry endpoint on the cluster network's gateway (optional)
# Extra arguments are passed to dockerd.
set -euo pipefail

: "${NODE_CGROUP_PARENT:?NODE_CGROUP_PARENT is required (the cgroup parent unique to this node)}"
REGISTRY_UPSTREAM="${REGISTRY_UPSTREAM:-}"

install -d -m 0755 /run/sshd
# /run is a tmpfs (fresh on every start), so no stale docker.pid can block a restart.

/usr/sbin/sshd -D -e &
if [ -n "$REGISTRY_UPSTREAM" ]; then
    socat -d TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr "TCP:${REGISTRY_UPSTREAM},connect-timeout=5" &
fi
dockerd --cgroup-parent="$NODE_CGROUP_PARENT" "$@" &
dockerd_pid=$!

# tini -g already delivered SIGTERM to every process: give dockerd time to stop its containers.
trap 'wait "$dockerd_pid" || true; exit 0' TERM INT

status=0
wait -n || status=$?
echo "node-entrypoint: a node process exited (status $status); stopping the node" >&2
exit "$status"
