"""The app's own settings and secrets in a deploy environment: ``APP_ENV_<NAME>`` and ``APP_SECRET_<NAME>``.

In deploy/<env>.env (or the environment as ``DJDEPLOY_APP_ENV_<NAME>`` / ``DJDEPLOY_APP_SECRET_<NAME>``):

    APP_ENV_SENTRY_ENVIRONMENT=production      the app containers and the migration get SENTRY_ENVIRONMENT
    APP_SECRET_EMAIL_HOST_PASSWORD_FILE=...    a versioned Docker secret, mounted at /run/secrets/app_<name>;
                                               the containers get EMAIL_HOST_PASSWORD_FILE (the contract reads it)
    APP_SECRET_SENTRY_DSN=...                  the same, with the value in the file itself

The prefixes keep them apart from the toolkit's own keys (APP_IMAGE, APP_MEMORY, ...). A name is upper case
letters, digits and '_'; names the toolkit sets itself are refused. Secret values are redacted like the
toolkit's own secrets and reach the manager only on stdin (``docker secret create``) and in the migration's
0600 env file. Pure: parsing and validation only; deploy.ship.config calls ``collect`` and ``check``.
"""

from __future__ import annotations

import re

ENV_PREFIX = "APP_ENV_"
SECRET_PREFIX = "APP_SECRET_"
PREFIXES = (ENV_PREFIX, SECRET_PREFIX)
NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
MAX_SECRET_NAME = 64   # Docker (swarmkit) refuses longer secret names
# What the toolkit itself sets in the app's environment (deploy.ship.stackfile._app, swarm.migrate_env).
RESERVED = frozenset({
    "APP_VERSION", "DJANGO_ALLOWED_HOSTS", "DJANGO_SECRET_KEY", "DATABASE_URL", "DATABASE_WAIT_TIMEOUT",
    "DJANGO_MANAGEPY_MIGRATE", "DJDEPLOY_RELEASE", "DJANGO_TRUSTED_PROXY", "DJANGO_SETTINGS_MODULE",
    "DJDEPLOY_SETTINGS_MODULE", "PATH", "HOME", "DJANGO_MEDIA_ROOT", "UWSGI_STATIC_MAP2",
})


def is_app_key(key: str) -> bool:
    return key.startswith(PREFIXES)


def secret_key(name: str) -> str:
    """The secret's key in the stack file and its file name under /run/secrets."""
    return f"app_{name.lower()}"


def _problem(key: str, prefix: str, name: str, value: str) -> str | None:
    """What is wrong with one app key (without the ``where: `` part), or None."""
    if not NAME_RE.match(name):
        return (f"invalid app variable name {key}: after {prefix} use upper-case letters, digits and '_', "
                f"starting with a letter (e.g. {prefix}SENTRY_DSN)")
    if name in RESERVED or (name.endswith("_FILE") and name[:-5] in RESERVED) or name.startswith("DJDEPLOY_"):
        return f"{key} would set {name}, which the toolkit sets itself; use the deploy key instead (see " \
               f"deploy/prod.env.example)"
    if prefix == SECRET_PREFIX and not value:
        return f"{key} is empty; an app secret needs a value (or {key}_FILE=path)"
    if "\n" in value or "\r" in value:
        return f"{key} holds several lines; the migration's env file cannot carry that (one line, e.g. base64)"
    return None


def check(found: dict, problems: list) -> tuple[tuple, tuple]:
    """Validate the collected keys; return (app variables, app secrets) as sorted (NAME, value) pairs.
    Secret values are stripped (a file's trailing newline); variables are kept as written."""
    env, secrets = {}, {}
    for key, (value, where) in sorted(found.items()):
        prefix = ENV_PREFIX if key.startswith(ENV_PREFIX) else SECRET_PREFIX
        name, value = key[len(prefix):], value.strip() if prefix == SECRET_PREFIX else value
        problem = _problem(key, prefix, name, value)
        if problem:
            problems.append(f"{where}: {problem}")
        else:
            (secrets if prefix == SECRET_PREFIX else env)[name] = (value, where)
    for name, (_, where) in sorted(env.items()):
        other = name[:-5] if name.endswith("_FILE") else name
        if other in secrets:
            problems.append(f"{where}: {ENV_PREFIX}{name} clashes with {SECRET_PREFIX}{other} (its file is "
                            f"{other}_FILE); set one of them")
    return (tuple((n, v) for n, (v, _) in sorted(env.items())),
            tuple((n, v) for n, (v, _) in sorted(secrets.items())))


def check_lengths(stack: str, secrets: tuple, found: dict, problems: list) -> None:
    """Docker secret names are at most 64 characters: ``<stack>_app_<name>_<10 hex>``."""
    for name, _ in secrets:
        length = len(stack) + 1 + len(secret_key(name)) + 11
        if length > MAX_SECRET_NAME:
            where = found[SECRET_PREFIX + name][1]
            problems.append(f"{where}: {SECRET_PREFIX}{name} makes a Docker secret name of {length} characters "
                            f"(at most {MAX_SECRET_NAME}); use a shorter name or STACK_NAME")
