#!/bin/bash
# Entrypoint of the app image: validate settings, wait for Postgres (bounded), optional migrate/collectstatic,
# derive uWSGI's Host rule from DJANGO_ALLOWED_HOSTS, then exec the command (PID 1 becomes uWSGI).
set -Eeuo pipefail

# djdeploy_django.preflight prints one line per problem on stderr (never a value) and the Host regex on stdout.
host_regex="$(python -m djdeploy_django.preflight)"

if [ "${DJANGO_MANAGEPY_MIGRATE:-off}" = "on" ]; then
    python manage.py migrate --noinput
fi
if [ "${DJANGO_MANAGEPY_COLLECTSTATIC:-off}" = "on" ]; then
    python manage.py collectstatic --noinput
fi

# A foreign or missing Host gets 400 with an empty body from uWSGI itself, before Django and the static map.
# ${HTTP_HOST} is expanded by uWSGI per request, not by this shell.
if [ -z "${UWSGI_ROUTE_IF_NOT:-}" ]; then
    export UWSGI_ROUTE_IF_NOT="regexp:\${HTTP_HOST};${host_regex} break:400"
fi

# Static files are served by uWSGI, not Django: give them the X-App-Version header that Django's responses carry.
if [ -z "${UWSGI_ROUTE:-}" ]; then
    export UWSGI_ROUTE="^/static/ addheader:X-App-Version: ${APP_VERSION:-dev}"
fi

exec "$@"
