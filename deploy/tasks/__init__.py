"""Thin Invoke task modules, and ``ns``: every task in one collection.

Any project's tasks.py (this repository's too) uses them all with one line: ``from deploy.tasks import ns``.
Each module imports heavy libraries (docker, fabric, django) inside task bodies, so that `inv --list` stays fast.
"""

from invoke import Collection, Task

from deploy.tasks import cluster, dev, image, init, lab, local, ship


def _tasks(module):
    return [obj for obj in vars(module).values() if isinstance(obj, Task)]


ns = Collection()
for _module in (image, local, ship, dev, init):
    for _task in _tasks(_module):
        ns.add_task(_task)
ns.add_collection(Collection.from_module(lab), name="lab")
ns.add_collection(Collection.from_module(cluster), name="cluster")
