"""Invoke entry point: assembles the task modules of the ``deploy`` package. Nothing else lives here."""

from invoke import Collection, Task

from deploy.tasks import cluster, db, dev, image, lab, local, ops, ship


def _tasks(module):
    return [obj for obj in vars(module).values() if isinstance(obj, Task)]


ns = Collection()
for _module in (image, local, ship, dev, ops):
    for _task in _tasks(_module):
        ns.add_task(_task)
ns.add_collection(Collection.from_module(lab), name="lab")
ns.add_collection(Collection.from_module(cluster), name="cluster")
ns.add_collection(Collection.from_module(db), name="db")
