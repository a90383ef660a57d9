#!/bin/bash
# Entrypoint of the app image: validate settings, wait for Postgres (bounded), optional migrate/collectstatic,
# derive uWSGI's Host rule from DJANGO_ALLOWED_HOSTS, then exec the command (PID 1 becomes uWSGI).
#
# SIGTERM (docker stop) ends the container within 2 s at any step. While this script is PID 1, a signal is
# delivered only because it is trapped, and bash runs a trap only between commands: every step that can take
# long (the database wait, migrate, collectstatic) therefore runs as a child that `wait` watches, and a SIGTERM
# or SIGINT is forwarded to it. A command other than uwsgi (e.g. `python manage.py migrate`, which as PID 1
# would ignore SIGTERM) runs the same way; uwsgi is exec'd and handles SIGTERM itself (graceful drain).
set -Eeuo pipefail

child=0
stopping=0
# bash starts background children with SIGINT ignored, so SIGINT is forwarded as SIGTERM too.
forward() {
    stopping=1
    if [ "$child" -ne 0 ]; then kill -TERM "$child" 2>/dev/null || true; fi
}
trap forward TERM INT

# run CMD...: CMD as a child (stdin kept) that receives a forwarded SIGTERM; returns its exit status.
run() {
    local rc=0
    "$@" <&0 &
    child=$!
    while :; do
        rc=0
        wait "$child" || rc=$?
        # a trapped signal interrupts `wait` (status > 128) while the child may still be running
        if [ "$rc" -le 128 ] || ! kill -0 "$child" 2>/dev/null; then break; fi
    done
    child=0
    return "$rc"
}

# step CMD...: one start-up step; once a signal has arrived, nothing further runs and the container exits 143.
step() {
    if [ "$stopping" -eq 0 ]; then run "$@"; fi
    if [ "$stopping" -eq 1 ]; then exit 143; fi
}

# djdeploy_django.preflight prints one line per problem on stderr (never a value) and, with --host-regex, the Host regex
# on stdout (fast: no network). --wait-for-db then waits for Postgres, bounded by DATABASE_WAIT_TIMEOUT.
host_regex="$(python -m djdeploy_django.preflight --host-regex)"
step python -m djdeploy_django.preflight --wait-for-db

if [ "${DJANGO_MANAGEPY_MIGRATE:-off}" = "on" ]; then
    step python manage.py migrate --noinput
fi
if [ "${DJANGO_MANAGEPY_COLLECTSTATIC:-off}" = "on" ]; then
    step python manage.py collectstatic --noinput
fi

# A foreign or missing Host gets 400 with an empty body from uWSGI itself, before Django and the static map.
# ${HTTP_HOST} is expanded by uWSGI per request, not by this shell.
if [ -z "${UWSGI_ROUTE_IF_NOT:-}" ]; then
    export UWSGI_ROUTE_IF_NOT="regexp:\${HTTP_HOST};${host_regex} break:400"
fi

# uWSGI's routing table beyond the Host rule. A rule chain needs one option several times, which UWSGI_* variables
# cannot express, so these are arguments of `uwsgi` (after any UWSGI_ROUTE* rule from the environment).
# - A hashed static file (GET) is answered by the `file` action: it reads the file and writes headers and body in
#   ONE write. The static map writes the headers, then sendfile()s the body: two small segments, and with
#   keep-alive the second waits for the client's delayed ACK (Nagle), up to 40 ms per response. Directory parts
#   without dots and a name without a leading dot keep the path inside /app/staticfiles; anything else (and HEAD)
#   falls through to the static map (static-safe), then to Django.
# - Responses: health probes (proxy, HEALTHCHECK) and served static files are not logged (a missing one is);
#   static answers carry X-App-Version like Django's. Caching: a hashed name is immutable (a year, `immutable`);
#   an unhashed one is cached a minute; a miss of a hashed name is never stored (no-store): during a rollout a
#   task of the other release may lack it, and the next request (the proxy's retry, a reload) must not meet a
#   cached 404. Release bridging (deploy/image/bridge.py) adds the previous releases' hashed files to this dir.
hashed='^/static/((?:[A-Za-z0-9_-]+/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.[0-9a-f]{12}\.[A-Za-z0-9]+)$'
routes=(
    --route-if-not 'equal:${REQUEST_METHOD};GET goto:djapp-django'
    --route "$hashed file-next:filename=/app/staticfiles/\$1,mime=1,content_type=application/octet-stream"
    --route-label djapp-django
    --response-route '^/health/$ donotlog:'
    --response-route-if 'regexp:${uwsgi[status]};^(200|304)$ goto:djapp-served'
    --response-route "$hashed addheader:Cache-Control: no-store"
    --response-route-run 'goto:djapp-done'
    --response-route-label djapp-served
    --response-route "^/static/ addheader:X-App-Version: ${APP_VERSION:-dev}"
    --response-route '^/static/ donotlog:'
    --response-route "$hashed goto:djapp-hashed"
    --response-route '^/static/ addheader:Cache-Control: public, max-age=60'
    --response-route-run 'goto:djapp-done'
    --response-route-label djapp-hashed
    --response-route-run "addheader:Expires: \${httptime[31536000]}"
    --response-route-run 'addheader:Cache-Control: public, max-age=31536000, immutable'
    --response-route-label djapp-done
)

if [ "$stopping" -eq 1 ]; then exit 143; fi
# Any other command runs as a child too, except on a terminal (`docker run -it`), where it must own Ctrl-C.
if [ "${1:-}" != "uwsgi" ] && [ ! -t 0 ]; then
    rc=0
    run "$@" || rc=$?
    exit "$rc"
fi
if [ "${1:-}" = "uwsgi" ]; then set -- "$@" "${routes[@]}"; fi
exec "$@"
