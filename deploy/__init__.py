"""djdeploy: Invoke tasks for the whole life of a Django app in containers.

Layout (each module small, no side effects at import time):
  errors.py   one-line user errors (ToolkitError) and their subclasses
  runner.py   the one place that runs commands, locally or through Fabric
  engine.py   the Docker SDK client, with a clear error when no engine answers
  gitinfo.py  immutable image tags from git
  lab/        the test lab (engine, base images, registry, SSH Swarm manager)
  tasks/      thin Invoke task modules assembled by the root tasks.py
"""

LABEL_PREFIX = "djdeploy"
