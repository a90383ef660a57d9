"""Run by docker-entrypoint.sh before the command: validate settings, wait for Postgres, print the Host rule.

- Every settings problem is one line naming the variable (never its value); exit 2.
- The settings module (DJANGO_SETTINGS_MODULE) must apply the contract (djdeploy_django.settings or
  contract.apply): otherwise one line says what is missing and the two ways to fix it; exit 2.
- DATABASE_URL empty: no wait. Otherwise connect until DATABASE_WAIT_TIMEOUT seconds have passed; an unreachable
  server ends with "cannot reach Postgres at host:port"; wrong credentials and a missing database fail at once
  with distinct messages. The password never appears in any message.
- stdout: the regex uWSGI uses to answer 400 to a foreign Host (the same names as ALLOWED_HOSTS).
"""

import importlib
import os
import sys
import time

from djdeploy_django import env

AUTH = ("password authentication failed", "no password supplied", "role \"", "authentication failed")
NO_DB = "does not exist"


def classify(message):
    """'auth', 'nodb' or 'retry' for a psycopg OperationalError message (pure; unit-tested)."""
    low = message.lower()
    if 'database "' in low and NO_DB in low:
        return "nodb"
    if any(marker in low for marker in AUTH):
        return "auth"
    return "retry"


def wait_for_db(db, timeout, connect=None, clock=time.monotonic, sleep=time.sleep):
    """Return None when Postgres accepts the credentials, else the one-line failure (no password in it)."""
    if connect is None:
        import psycopg

        def connect(**kw):
            psycopg.connect(**kw).close()
    where = f"{db['HOST']}:{db['PORT']}"
    deadline = clock() + timeout
    while True:
        left = deadline - clock()
        try:
            connect(host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"],
                    dbname=db["NAME"], connect_timeout=max(1, min(3, int(left) or 1)))
            return None
        except Exception as exc:  # psycopg.OperationalError and friends
            kind = classify(str(exc))
        if kind == "auth":
            return f"Postgres at {where} rejected the credentials of user {db['USER']!r}; check DATABASE_URL"
        if kind == "nodb":
            return f"database {db['NAME']!r} does not exist on Postgres at {where}; create it or fix DATABASE_URL"
        if clock() >= deadline:
            return (f"cannot reach Postgres at {where} after {timeout:g}s (DATABASE_WAIT_TIMEOUT); "
                    "check that it runs and that the host and port are right")
        sleep(min(0.5, max(0.0, deadline - clock())))


def contract_problems(name, ns, environ):
    """What a settings namespace lacks of the contract (empty when applied); pure, unit-tested."""
    if ns.get("DJDEPLOY_CONTRACT"):
        return []
    middleware = list(ns.get("MIDDLEWARE") or [])
    missing = [f"{cls} in MIDDLEWARE" for cls in ("djdeploy_django.middleware.HealthMiddleware",
                                                  "djdeploy_django.middleware.AppVersionMiddleware")
               if cls not in middleware]
    try:
        if list(ns.get("ALLOWED_HOSTS") or []) != env.allowed_hosts(environ):
            missing.append("ALLOWED_HOSTS from DJANGO_ALLOWED_HOSTS")
    except env.EnvError:
        pass  # reported on its own
    if "TRUSTED_PROXIES" not in ns:
        missing.append("TRUSTED_PROXIES from DJANGO_TRUSTED_PROXY")
    if not missing:
        return []
    return [f"settings module {name} does not apply the djdeploy_django contract (missing: {', '.join(missing)}); "
            "end it with `from djdeploy_django.contract import apply; apply(globals())`, or set "
            f"DJANGO_SETTINGS_MODULE=djdeploy_django.settings and DJDEPLOY_SETTINGS_MODULE={name}"]


def load_settings(environ):
    """Import the settings module (validates every variable); return its name and namespace."""
    name = environ.get("DJANGO_SETTINGS_MODULE", "").strip()
    if not name:
        raise env.EnvError("DJANGO_SETTINGS_MODULE is not set; set it to djdeploy_django.settings")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise env.EnvError(f"DJANGO_SETTINGS_MODULE names {name}, which cannot be imported; "
                               "set it to djdeploy_django.settings") from None
        raise
    if name == "djdeploy_django.settings":
        name = environ.get("DJDEPLOY_SETTINGS_MODULE", name)
    return name, vars(module)


def main(environ=None):
    environ = os.environ if environ is None else environ
    try:
        name, ns = load_settings(environ)
        hosts = env.allowed_hosts(environ)
        db = env.database(environ)
        timeout = env.integer("DATABASE_WAIT_TIMEOUT", 30, environ)
    except env.EnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = contract_problems(name, ns, environ)
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    if db is not None and environ.get("DATABASE_WAIT", "on") != "off":
        problem = wait_for_db(db, timeout)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 3
    print(env.host_regex(hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
