"""deploy.lab.registry_gc: the exact commands, the dry-run guard against a push in flight, the freed bytes
measured on the storage directory, the messages verbatim. A fake runner and a temporary storage dir."""

import io
import os

import pytest
from invoke import Result

from deploy.core.runner import Runner
from deploy.lab import paths, registry, registry_gc
from shipfakes import FakeManager

OURS, OLD, NEW = ("sha256:" + c * 64 for c in "abc")


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DATA", tmp_path)
    for digest, size in ((OURS, 3000), (OLD, 700), (NEW, 50)):
        path = registry_gc.blob_file(digest)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * size)
    os.utime(registry_gc.blob_file(OLD), (1000, 1000))
    return tmp_path


def gc_manager(eligible, removes):
    def real(command):
        for d in removes:
            registry_gc.blob_file(d).unlink()
        return Result(stdout="")
    dry = "".join(f"blob eligible for deletion: {d}\n" for d in eligible)
    return FakeManager([("--dry-run", Result(stdout="djapp\n" + dry + "3 blobs marked, 2 blobs eligible\n")),
                        ("garbage-collect", real)])


def test_commands_and_what_counts_as_the_lab_registry():
    assert registry_gc.gc_argv(True) == ["/usr/bin/docker-registry", "garbage-collect", "--dry-run", str(registry.CONFIG)]
    assert registry_gc.gc_argv(False) == ["/usr/bin/docker-registry", "garbage-collect", str(registry.CONFIG)]
    assert not registry_gc.applies("registry.example.com:443")
    assert registry_gc.applies(paths.REGISTRY) == registry.CONFIG.exists()
    assert registry_gc.blob_file(OURS, data=registry.DATA) == (
        registry.DATA / "docker/registry/v2/blobs/sha256/aa" / ("a" * 64) / "data")


def test_gc_runs_when_every_eligible_blob_is_ours_or_old_and_reports_the_bytes(data):
    m, out = gc_manager([OURS, OLD], [OURS, OLD]), io.StringIO()
    assert registry_gc.collect(Runner(ctx=m, out=io.StringIO()), {OURS}, out) == (2, 3700)
    assert [c.split()[-2:] for c in m.commands()] == [["--dry-run", str(registry.CONFIG)],
                                                       ["garbage-collect", str(registry.CONFIG)]]
    assert out.getvalue() == "lab registry garbage collection: removed 2 blob(s), freed 3.7 kB\n"


def test_a_recent_blob_that_is_not_ours_is_waited_for_once_then_gc_goes_on_or_skips(data):
    slept = []
    clock = iter([registry_gc.blob_file(NEW).stat().st_mtime + 10, 10**10])
    m, out = gc_manager([OURS, NEW], [OURS, NEW]), io.StringIO()
    assert registry_gc.collect(Runner(ctx=m, out=io.StringIO()), {OURS}, out, now=lambda: next(clock),
                               sleep=slept.append) == (2, 3050)
    assert slept == [51.0] and out.getvalue() == (
        "lab registry garbage collection: 1 recent unreferenced blob(s) prune did not free; waiting 51s for a push "
        "that may be in flight\nlab registry garbage collection: removed 2 blob(s), freed 3.0 kB\n")
    m, out = gc_manager([OURS, OLD], []), io.StringIO()
    os.utime(registry_gc.blob_file(OLD))  # young again at every look: a push that keeps going
    assert registry_gc.collect(Runner(ctx=m, out=io.StringIO()), {OURS}, out, sleep=lambda s: None) == (0, 0)
    assert len(m.commands()) == 2 and registry_gc.blob_file(OLD).exists()  # two dry runs, no GC
    assert out.getvalue().splitlines()[-1] == (
        "lab registry garbage collection skipped: 1 unreferenced blob(s) younger than 60s that prune did not free "
        "(a push may be in progress); run `inv prune` again later")


def test_gc_is_skipped_while_an_upload_is_written_but_not_for_an_aborted_one(data):
    upload = data / "docker/registry/v2/repositories/lab/postgres/_uploads/u1/data"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"partial")
    m, out = gc_manager([OURS], [OURS]), io.StringIO()
    assert registry_gc.collect(Runner(ctx=m, out=io.StringIO()), {OURS}, out) == (0, 0)
    assert m.commands() == [] and out.getvalue() == (
        "lab registry garbage collection skipped: 1 upload(s) in progress; run `inv prune` again later\n")
    os.utime(upload, (1000, 1000))  # untouched for long: an aborted push
    assert registry_gc.collect(Runner(ctx=m, out=io.StringIO()), {OURS}, io.StringIO()) == (1, 3000)
