#!/usr/bin/env bash
# Benchmark (issue 13): does the image's uWSGI ever stop answering under load (e.g. every worker recycling at once)?
# Runs IMAGE alone (DATABASE_URL=''), 20 s of wrk (2 threads, 4 keep-alive connections) on the page's hashed CSS,
# and meanwhile a /health/ probe every 0.25 s; prints the recycles in the log, the slow probes and wrk's latency.
# Only 127.0.0.1; the container is labelled djdeploy.bench=stall and removed.
#   bash bench/worker_stall.sh djapp:latest
set -euo pipefail
img=${1:-djapp:latest}; name=djbench-stall-$RANDOM
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
docker run -d --rm --name "$name" --label djdeploy.bench=stall -p "127.0.0.1:$port:8000" -e DATABASE_URL= \
  -e DJANGO_SECRET_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')" \
  -e DJANGO_ALLOWED_HOSTS=localhost "$img" >/dev/null
for _ in $(seq 1 60); do curl -sf -o /dev/null -H "Host: localhost" "http://127.0.0.1:$port/health/" && break; sleep 0.5; done
css=$(curl -s -H "Host: localhost" "http://127.0.0.1:$port/" | grep -o '/static/[^"]*\.css' | head -1)
out=$(mktemp)
wrk -t2 -c4 -d20s --latency -H "Host: localhost" "http://127.0.0.1:$port$css" > "$out" &
n=0; slow=0; worst=0; end=$((SECONDS + 19))
while [ $SECONDS -lt $end ]; do
  t=$(curl -s -o /dev/null -w "%{time_total}" -H "Host: localhost" "http://127.0.0.1:$port/health/"); n=$((n + 1))
  if awk -v t="$t" 'BEGIN { exit !(t > 0.5) }'; then slow=$((slow + 1)); fi
  worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
  sleep 0.25
done
wait
echo "$img: recycles $(docker logs "$name" 2>&1 | grep -c 'Seeya' || true); health probes $n, over 0.5 s: $slow, slowest ${worst}s"
grep -E "Latency |99%|Requests/sec" "$out"; rm -f "$out"
