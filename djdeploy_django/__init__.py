"""djdeploy_django: the image contract every djdeploy image relies on, as a small reusable Django add-on.

What a project gets (nothing to copy into it):
  settings.py   DJANGO_SETTINGS_MODULE=djdeploy_django.settings wraps the project's own settings module
                (named by DJDEPLOY_SETTINGS_MODULE) and applies the contract on top (contract.apply)
  contract.py   apply(globals()): settings from the environment (SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, each
                secret also as <NAME>_FILE), secure defaults, the middleware below; for projects that keep
                their own settings module and call it at its end
  middleware.py X-App-Version on every response; /health/ (liveness) and /health/?ready=1 (readiness)
  wsgi.py       the WSGI entry point uWSGI loads: the project's WSGI_APPLICATION, with X-Forwarded-Proto trusted
                only from DJANGO_TRUSTED_PROXY
  preflight.py  run by the image's entrypoint: validate settings (one line per problem, never a value), check the
                contract is applied, wait for Postgres, print uWSGI's Host regex (from DJANGO_ALLOWED_HOSTS)
  healthcheck.py the image's HEALTHCHECK (standard library only)
  env.py        the strict environment readers (no Django import)
"""

CONTRACT_VERSION = 1
