"""The ship tests' fixtures. They live in shiphelpers.py with the helpers, under a name of their own: two test
packages' `conftest` modules collide when they are imported by that name (tests/ops reuses these)."""

from shiphelpers import env, lab  # noqa: F401  (fixtures: pytest finds them in this module's namespace)
