"""DJANGO_SETTINGS_MODULE=djdeploy_django.settings: the project's own settings module, with the contract on top.

DJDEPLOY_SETTINGS_MODULE names the project's module (e.g. ``mysite.settings``); its upper-case names are taken
as they are, then djdeploy_django.contract.apply overrides what must come from the environment. The project's
settings file stays untouched (``inv init`` never edits it): its development values keep working for
``manage.py runserver`` without the image.
"""

import importlib
import os

from djdeploy_django.contract import apply
from djdeploy_django.env import EnvError

_NAME = os.environ.get("DJDEPLOY_SETTINGS_MODULE", "").strip()
if not _NAME or _NAME == __name__:
    raise EnvError("DJDEPLOY_SETTINGS_MODULE is not set; set it to the project's own settings module "
                   "(e.g. mysite.settings)")
try:
    _project = importlib.import_module(_NAME)
except ModuleNotFoundError as exc:
    if exc.name and (_NAME == exc.name or _NAME.startswith(exc.name + ".")):
        raise EnvError(f"DJDEPLOY_SETTINGS_MODULE names {_NAME}, which cannot be imported; "
                       "name the project's settings module (e.g. mysite.settings)") from None
    raise

globals().update({k: v for k, v in vars(_project).items() if k.isupper()})
apply(globals())
del _project
