# Production image of this Django project: uWSGI on :8000, non-root uid 10001, static files baked in.
# Classic builder compatible (no BuildKit syntax). Build with `inv build` (it adds the host's CA bundle for
# TLS-intercepting proxies to the builder stage only) or plain `docker build .`.

# ---- assets: the front-end build (IMAGE_ASSETS_* in .env; `inv build` passes them as DJDEPLOY_ASSETS_*) ----
# The front-end lives in its own directory of the project (IMAGE_ASSETS_SRC), so a Python change never reruns it:
# its Debian packages, then only its dependency manifests and the install step (rerun when package*.json change),
# then its sources and the build step. The output directory (IMAGE_ASSETS_DIR) goes to /out and the final stage
# copies it into the project before collectstatic. With no IMAGE_ASSETS_BUILD every step is a cached no-op and
# /out stays empty. manage.py is copied along only because a classic-builder COPY needs one source that exists
# (every Django project has it); it is removed again. The sources are copied as ${DJDEPLOY_ASSETS_SRC}* (a directory
# that may be missing): a sibling whose name starts the same (frontend-old) would be merged in.
FROM debian:trixie-slim AS assets
ENV DEBIAN_FRONTEND=noninteractive
ARG DJDEPLOY_ASSETS_PACKAGES=""
# hadolint ignore=DL3008,SC2086
RUN if [ -n "$DJDEPLOY_ASSETS_PACKAGES" ]; then apt-get update \
    && apt-get install -y --no-install-recommends $DJDEPLOY_ASSETS_PACKAGES \
    && rm -rf /var/lib/apt/lists/*; fi
ARG DJDEPLOY_ASSETS_SRC=frontend
WORKDIR /src/${DJDEPLOY_ASSETS_SRC}
# build-ca.pem (see the builder stage) is trusted by the install step only (npm: cafile), then removed.
COPY project/manage.py project/${DJDEPLOY_ASSETS_SRC}/package*.json build-ca.pem* ./
ARG DJDEPLOY_ASSETS_INSTALL=""
RUN rm manage.py && if [ -n "$DJDEPLOY_ASSETS_INSTALL" ]; then \
      if [ -f build-ca.pem ]; then export NODE_EXTRA_CA_CERTS="$PWD/build-ca.pem" npm_config_cafile="$PWD/build-ca.pem"; fi \
      && eval "$DJDEPLOY_ASSETS_INSTALL"; fi \
 && rm -f build-ca.pem
COPY project/manage.py project/${DJDEPLOY_ASSETS_SRC}* ./
ARG DJDEPLOY_ASSETS_BUILD=""
ARG DJDEPLOY_ASSETS_DIR=""
RUN rm manage.py && mkdir /out && if [ -n "$DJDEPLOY_ASSETS_BUILD" ]; then eval "$DJDEPLOY_ASSETS_BUILD" \
    && { [ -d "/src/$DJDEPLOY_ASSETS_DIR" ] || { echo "IMAGE_ASSETS_DIR=$DJDEPLOY_ASSETS_DIR: the build wrote no such directory" >&2; exit 1; }; } \
    && cp -a "/src/$DJDEPLOY_ASSETS_DIR/." /out/; fi

# ---- builder: a virtualenv with the locked wheels; pip and its caches never reach the final image ----
# Translation sources (*.po, 11 MB in Django) are dropped: Django reads only the compiled *.mo files.
# django.contrib.gis (3.5 MB) is dropped too: GeoDjango needs GDAL/GEOS, which this image does not carry.
FROM debian:trixie-slim AS builder
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
# Build-time Debian packages (IMAGE_BUILD_PACKAGES, e.g. "gcc python3-dev libjpeg-dev zlib1g-dev"): this stage
# only, before any requirement, so pip can compile what IMAGE_SOURCE_BUILDS names; none of them reach the final image.
ARG DJDEPLOY_BUILD_PACKAGES=""
# hadolint ignore=DL3008,SC2086
RUN if [ -n "$DJDEPLOY_BUILD_PACKAGES" ]; then apt-get update \
    && apt-get install -y --no-install-recommends $DJDEPLOY_BUILD_PACKAGES \
    && rm -rf /var/lib/apt/lists/*; fi
# build-ca.pem exists only when `inv build` found PIP_CERT/SSL_CERT_FILE/REQUESTS_CA_BUNDLE on the host;
# the glob keeps plain `docker build .` working without it. It is used here and never copied onward.
# First the image contract's runtime (uWSGI, psycopg: djdeploy_django/requirements.lock), then the project's own.
# DJDEPLOY_EXTRAS=s3 (IMAGE_EXTRAS in .env) adds the contract's optional S3 uploads (django-storages, boto3):
# every dependency is pinned with its hash in the lock (so pip checks hashes), --no-deps since Django comes next.
ARG DJDEPLOY_EXTRAS=""
COPY djdeploy_django/requirements*.lock build-ca.pem* /tmp/contract/
RUN python3 -m venv /opt/venv \
 && if [ -f /tmp/contract/build-ca.pem ]; then export PIP_CERT=/tmp/contract/build-ca.pem; fi \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --only-binary=:all: \
        --require-hashes -r /tmp/contract/requirements.lock \
 && for extra in $DJDEPLOY_EXTRAS; do /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --only-binary=:all: --no-deps -r "/tmp/contract/requirements-$extra.lock" || exit 1; done \
 && rm -rf /tmp/contract
# Wheels only, except the packages IMAGE_SOURCE_BUILDS names (e.g. "mysqlclient"): pip builds those from their sdist
# with the IMAGE_BUILD_PACKAGES above. A missing wheel is an error, never a silent compile.
COPY project/requirements.lock build-ca.pem* /tmp/build/
ARG DJDEPLOY_SOURCE_BUILDS=""
RUN if [ -f /tmp/build/build-ca.pem ]; then export PIP_CERT=/tmp/build/build-ca.pem; fi \
 && set -- && for name in $DJDEPLOY_SOURCE_BUILDS; do set -- "$@" "--no-binary=$name"; done \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --only-binary=:all: "$@" \
        --require-hashes -r /tmp/build/requirements.lock \
 && /opt/venv/bin/pip uninstall -y --disable-pip-version-check pip \
 && find /opt/venv -name '*.po' -delete \
 && rm -rf /opt/venv/lib/python3.13/site-packages/django/contrib/gis \
 && rm -rf /tmp/build

# ---- final: Python runtime only (no compiler, no pip, no apt lists) ----
# Like the official python images, the stdlib's own test suite (and pydoc's help pages) are removed.
FROM debian:trixie-slim
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
           /usr/lib/python3.13/test /usr/lib/python3.13/pydoc_data \
 && groupadd --gid 10001 app \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin app \
 && find / -xdev -perm /6000 -type f -exec chmod a-s {} +
# Runtime Debian packages of the project (IMAGE_SYSTEM_PACKAGES, e.g. "libjpeg62-turbo zlib1g"): their own layer,
# before the dependencies and the code, so a code change never reruns it; setuid bits are dropped again.
ARG DJDEPLOY_SYSTEM_PACKAGES=""
# hadolint ignore=DL3008,SC2086
RUN if [ -n "$DJDEPLOY_SYSTEM_PACKAGES" ]; then apt-get update \
    && apt-get install -y --no-install-recommends $DJDEPLOY_SYSTEM_PACKAGES \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && find / -xdev -perm /6000 -type f -exec chmod a-s {} +; fi

# uWSGI is configured by UWSGI_* variables (override any of them with -e). Notes, each proved by tests/image:
# - workers: one per CPU by default (2); lazy-apps loads Django in each worker after fork, so fewer workers on
#   few CPUs reach the first 200 sooner. Raise UWSGI_WORKERS for I/O-bound pages on bigger hosts;
# - one thread per worker: in uWSGI 2.0 harakiri is per worker, and with threads>1 any request that ends on the
#   same worker clears the timer, so a stuck request is never killed (UWSGI_THREADS>1 trades that away);
# - SIGTERM (docker stop) is mapped to gracefully_kill_them_all: in-flight requests finish, exit code 0;
#   worker-reload-mercy bounds the wait below Docker's 10 s grace period;
# - no offload threads: for small hashed static files the hand-off costs more than it saves (bench: ~9x fewer
#   requests/s with one offload thread); hashed static files are served by a `file` route (docker-entrypoint.sh),
#   which writes each response in one segment: the static map's two (headers, then sendfile) stall on the
#   client's delayed ACK with keep-alive;
# - the HTTP router reaches the workers over a unix socket in /tmp (tmpfs in the hardened stack and compose file)
#   and runs two processes: with the default (a TCP socket on 127.0.0.1, one router process) the router's
#   loopback hop bounded hashed static files at ~1.9x gunicorn + WhiteNoise on a 2-core machine, 3.5x with both
#   (bench/image_throughput.py variants, BENCHMARKS.md "Static files: the router's socket");
# - every request is logged except health probes and served static files (docker-entrypoint.sh's routes);
#   the master writes the log (log-master) and drains the router's "Connection reset by peer" lines: HAProxy
#   ends every health check with a TCP reset (by design), which the HTTP router would log each second;
# - workers are recycled by memory (reload-on-rss 512 MB), not by request count: with max-requests, any worker
#   serving over max-requests/10 s reaches its count before min-worker-lifetime (10 s), so under load every worker
#   recycled at the same 10 s mark (max-requests-delta could not stagger them): ~1 s with no worker at all, every
#   10 s, which failed the proxy's 1 s health checks (503s in the HTTPS benchmark). UWSGI_MAX_REQUESTS=N brings it back;
# - http-timeout just above harakiri: with keep-alive, the HTTP router keeps a client whose worker was killed
#   waiting until this timeout;
# - the Host rule (route-if-not) is derived from DJANGO_ALLOWED_HOSTS by docker-entrypoint.sh.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=djdeploy_django.settings \
    DJDEPLOY_SETTINGS_MODULE=config.settings \
    UWSGI_HTTP=:8000 \
    UWSGI_SOCKET=/tmp/djapp-workers.sock \
    UWSGI_HTTP_PROCESSES=2 \
    UWSGI_MASTER=1 \
    UWSGI_MODULE=djdeploy_django.wsgi:application \
    UWSGI_NEED_APP=1 \
    UWSGI_STRICT=1 \
    UWSGI_LAZY_APPS=1 \
    UWSGI_WSGI_ENV_BEHAVIOR=holy \
    UWSGI_HTTP_AUTO_CHUNKED=1 \
    UWSGI_HTTP_KEEPALIVE=1 \
    UWSGI_WORKERS=2 \
    UWSGI_THREADS=1 \
    UWSGI_ENABLE_THREADS=1 \
    UWSGI_STATIC_MAP=/static/=/app/staticfiles/ \
    UWSGI_STATIC_SAFE=/app/staticfiles/ \
    UWSGI_RELOAD_ON_RSS=512 \
    UWSGI_HARAKIRI=30 \
    UWSGI_HTTP_TIMEOUT=35 \
    UWSGI_HARAKIRI_VERBOSE=1 \
    UWSGI_POST_BUFFERING=65536 \
    UWSGI_BUFFER_SIZE=16384 \
    UWSGI_HOOK_MASTER_START="unix_signal:15 gracefully_kill_them_all" \
    UWSGI_WORKER_RELOAD_MERCY=8 \
    UWSGI_DIE_ON_TERM=0 \
    UWSGI_VACUUM=1 \
    UWSGI_LOG_MASTER=1 \
    UWSGI_LOG_DRAIN="hr_(read|write)[(][)]: (Connection reset by peer|Broken pipe) [[]plugins/http" \
    UWSGI_IGNORE_SIGPIPE=1 \
    UWSGI_IGNORE_WRITE_ERRORS=1 \
    UWSGI_DISABLE_WRITE_EXCEPTION=1 \
    DATABASE_WAIT_TIMEOUT=30

COPY --from=builder /opt/venv /opt/venv
# The image contract (health endpoints, settings from the environment, preflight, forwarded-proto trust).
COPY djdeploy_django/ /opt/venv/lib/python3.13/site-packages/djdeploy_django/
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /app
COPY project/ /app/
# The front-end build's output (empty without IMAGE_ASSETS_BUILD), where the project expects it, e.g. an app's static/.
ARG DJDEPLOY_ASSETS_DIR=""
COPY --from=assets /out/ /app/${DJDEPLOY_ASSETS_DIR}/
# Hashed static files collected at build time: no database, a throwaway key generated inside this step.
RUN DJANGO_SECRET_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    DJANGO_ALLOWED_HOSTS=localhost DATABASE_URL='' \
    python manage.py collectstatic --noinput --verbosity 0 \
 && python -m compileall -q /app /opt/venv/lib/python3.13/site-packages/djdeploy_django \
 && install -d -o 10001 -g 10001 -m 0755 /app/media \
 && chmod 0755 /usr/local/bin/docker-entrypoint.sh

ARG APP_VERSION=dev
ENV APP_VERSION=$APP_VERSION
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["python", "-m", "djdeploy_django.healthcheck"]
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["uwsgi"]
