"""deploy.ops.prune_registry against a Registry API v2 stand-in: the exact requests (tags list with
pagination, HEAD with the manifest types, DELETE by digest), what is protected (a kept tag or another tag on
the same digest, a digest a service uses), the dry run, every error message verbatim."""

import dataclasses
import io

import pytest

from deploy.core.errors import ToolkitError
from deploy.ops import prune_registry
from fakeregistry import FakeRegistry, digest
from shipfakes import make_cfg

TAGS = {"djt-v1": digest(1), "djt-v2": digest(2), "djt-v3": digest(3), "djt-v3b": digest(3),
        "djt-v4": digest(4), "other-h1": digest(4), "djt-v5": digest(5), "djt-v6": digest(6)}


@pytest.fixture
def reg():
    r = FakeRegistry(TAGS, page=3)
    yield r
    r.close()


@pytest.fixture
def cfg(tmp_path, reg):
    return dataclasses.replace(make_cfg(tmp_path), registry=reg.address)


def test_plan_deletes_only_digests_all_of_whose_tags_go_and_no_service_uses():
    remove = {"djt-v2", "djt-v3", "djt-v4", "djt-v6"}
    assert prune_registry.plan(TAGS, remove, {digest(6)}) == {digest(2): ["djt-v2"]}
    # djt-v3b (kept) shares v3's digest, other-h1 (another environment) shares v4's, a service runs v6.
    assert prune_registry.plan(TAGS, remove | {"djt-v3b"}, set()) == {
        digest(2): ["djt-v2"], digest(3): ["djt-v3", "djt-v3b"], digest(6): ["djt-v6"]}


def test_a_rollbacks_bridged_tag_goes_and_stays_with_its_release():
    tags = {"v1": "sha256:a", "v1-static": "sha256:b", "v2-static": "sha256:c", "v2": "sha256:d", "v1-staticx": "sha256:e"}
    assert prune_registry.plan(tags, {"v1"}, set()) == {"sha256:a": ["v1"], "sha256:b": ["v1-static"]}
    assert prune_registry.plan(tags, {"v1"}, {"sha256:b"}) == {"sha256:a": ["v1"]}  # a service runs it
    assert prune_registry.release_of("v2-static") == "v2" and prune_registry.release_of("v1-staticx") == "v1-staticx"


def test_prune_lists_every_page_heads_each_tag_then_deletes_by_digest(cfg, reg):
    out = io.StringIO()
    named = prune_registry.prune(cfg, {"djt-v2", "djt-v3", "djt-v4"}, set(), False, out)
    assert reg.deleted == [digest(2)]
    assert named == {digest(2), "sha256:c" + digest(2)[8:], "sha256:base", "sha256:l" + digest(2)[8:]}
    lists = [p for m, p, _ in reg.requests if "tags/list" in p]
    assert lists == ["/v2/djapp/tags/list?n=1000", "/v2/djapp/tags/list?n=3&last=djt-v3",
                     "/v2/djapp/tags/list?n=3&last=djt-v5"]
    heads = sorted(p.rpartition("/")[2] for m, p, _ in reg.requests if m == "HEAD")
    assert heads == sorted(TAGS)
    accept = {a for m, _, a in reg.requests if m == "HEAD"}.pop()
    for kind in ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
                 "application/vnd.oci.image.index.v1+json"):
        assert kind in accept
    assert ("DELETE", f"/v2/djapp/manifests/{digest(2)}") in [(m, p) for m, p, _ in reg.requests]
    assert out.getvalue().splitlines() == [
        f"registry {reg.address}: deleting djapp:djt-v2 (sha256:222222222222)",
        f"registry {reg.address}: deleted 1 manifest(s) (1 tag(s)); 7 tag(s) of djapp stay"]


def test_dry_run_lists_and_deletes_nothing(cfg, reg):
    out = io.StringIO()
    prune_registry.prune(cfg, {"djt-v2", "djt-v3", "djt-v3b"}, set(), True, out)
    assert reg.deleted == [] and not [m for m, _, _ in reg.requests if m == "DELETE"]
    assert out.getvalue().splitlines() == [
        f"registry {reg.address}: would delete djapp:djt-v2 (sha256:222222222222)",
        f"registry {reg.address}: would delete djapp:djt-v3, djt-v3b (sha256:333333333333)",
        f"registry {reg.address}: would delete 2 manifest(s) (3 tag(s)); 5 tag(s) of djapp stay"]


def test_a_registry_without_deletes_is_a_one_line_error(tmp_path):
    reg = FakeRegistry(TAGS, delete_status=405)
    try:
        cfg = dataclasses.replace(make_cfg(tmp_path), registry=reg.address)
        with pytest.raises(ToolkitError) as err:
            prune_registry.prune(cfg, {"djt-v2"}, set(), False, io.StringIO())
    finally:
        reg.close()
    assert str(err.value) == (f"registry {reg.address} does not allow deleting manifests (HTTP 405); enable it there "
                              "(distribution: storage.delete.enabled: true) or delete the old tags yourself; the "
                              "nodes were pruned")


def test_wrong_credentials_and_an_unreachable_registry_are_one_line_errors(tmp_path, reg):
    cfg = dataclasses.replace(make_cfg(tmp_path), registry=reg.address, registry_password="wrong")
    with pytest.raises(ToolkitError) as err:
        prune_registry.prune(cfg, {"djt-v2"}, set(), False, io.StringIO())
    assert str(err.value) == (f"registry {reg.address} answered HTTP 401 on the tag list; nothing more was deleted "
                              f"there (the nodes were pruned); check REGISTRY / REGISTRY_USER in {cfg.source}")
    reg.close()
    with pytest.raises(ToolkitError) as err:
        prune_registry.prune(dataclasses.replace(cfg, registry_password="regsecret"), {"djt-v2"}, set(), False,
                             io.StringIO())
    assert str(err.value).startswith(f"registry {reg.address} is not reachable (")
    assert str(err.value).endswith(f") on the tag list; nothing more was deleted there (the nodes were pruned); "
                                   f"start it or fix REGISTRY in {cfg.source}")


def test_an_unknown_repository_has_no_tags_and_the_operator_note(tmp_path):
    reg = FakeRegistry({})
    try:
        cfg = dataclasses.replace(make_cfg(tmp_path), registry=reg.address, app_image="nothere")
        assert prune_registry.tags(cfg) == []
    finally:
        reg.close()
    assert prune_registry.operator_note(cfg) == (
        f"registry {reg.address}: the deleted manifests' blobs stay on its disk until its garbage collection runs; "
        "that is the registry operator's job (distribution: `registry garbage-collect <config>` with pushes paused)\n")


def test_nothing_to_delete_asks_the_registry_nothing(cfg, reg):
    out = io.StringIO()
    assert prune_registry.prune(cfg, set(), set(), False, out) == set() and reg.requests == []
    assert out.getvalue() == f"registry {reg.address}: no old release of this environment to delete\n"
