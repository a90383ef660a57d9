"""Benchmark-only settings: the product settings plus WhiteNoise serving STATIC_ROOT (gunicorn has no static map)."""

from config.settings import *  # noqa: F401,F403
from config.settings import MIDDLEWARE

MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]
