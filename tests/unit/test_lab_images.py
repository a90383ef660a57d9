"""Where the lab's images come from: kept, pulled, or built as stand-ins, and named honestly. No engine."""

from __future__ import annotations

import pytest
from docker.errors import ImageNotFound
from invoke import MockContext

from deploy.core.errors import ToolkitError
from deploy.core.runner import Runner
from deploy.lab import baseimage, host, imagesource, paths, provide, provision, standins
from deploy.lab.imagesource import BUILD, KEEP, PULL, PULL_OR_BUILD, Found

LAB = {paths.LABEL: "/lab", paths.HASH_LABEL: "h1"}


# --- the decision ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("labels,can_pull,recipe,action", [
    (None, True, True, PULL_OR_BUILD),            # absent: pull first
    (None, False, True, BUILD),                   # absent, lab-only name: build
    (None, True, False, PULL),                    # absent, no recipe: pull or nothing
    ({}, True, True, KEEP),                       # present, no labels: the user's image, never replaced
    ({"maintainer": "x"}, False, True, KEEP),
    ({paths.LABEL: ""}, True, True, KEEP),        # an empty lab label is no lab label
    (LAB, True, True, KEEP),                      # the lab's stand-in from the current recipe
    ({**LAB, paths.HASH_LABEL: "old"}, True, True, PULL_OR_BUILD),  # the lab's, stale: official if pullable
    ({**LAB, paths.HASH_LABEL: "old"}, False, True, BUILD),
    ({**LAB, paths.HASH_LABEL: "old"}, True, False, KEEP),
    ({paths.LABEL: "/other-lab", paths.HASH_LABEL: "old"}, True, True, KEEP),  # another lab's: not ours
])
def test_decide(labels, can_pull, recipe, action):
    assert imagesource.decide(imagesource.found_from_labels(labels, "h1", "/lab"), can_pull, recipe) == action


def test_found_from_labels():
    assert imagesource.found_from_labels(None, "h") == Found(False)
    assert imagesource.found_from_labels({}, "h") == Found(True, False, False, (), False)
    f = imagesource.found_from_labels(LAB, "h1")
    assert (f.present, f.lab, f.current, f.label(paths.LABEL)) == (True, True, True, "/lab")


@pytest.mark.parametrize("name,ok", [
    ("postgres:17-trixie", True), ("debian:trixie-slim", True), ("ghcr.io/me/pg:17", True),
    ("127.0.0.1:5000/lab/postgres:17-trixie", True),
    ("djdeploy-lab/pebble:2.6", False), ("djdeploy-bench/debian:trixie-slim", False)])
def test_lab_only_names_are_never_pulled(name, ok):
    assert imagesource.pullable(name) is ok


@pytest.mark.parametrize("name,parts", [
    ("postgres:17-trixie", ("postgres", "17-trixie")), ("debian", ("debian", "latest")),
    ("127.0.0.1:5000/djapp", ("127.0.0.1:5000/djapp", "latest")),
    ("127.0.0.1:5000/djapp:abc", ("127.0.0.1:5000/djapp", "abc"))])
def test_split_ref(name, parts):
    assert imagesource.split_ref(name) == parts


def test_status_texts_say_official_or_stand_in_and_from_what():
    assert imagesource.describe(Found(False), False) == (
        False, "MISSING (lab.up pulls it, or builds a stand-in when it cannot be pulled)")
    assert imagesource.describe(Found(True), True) == (True, "official (pulled by the lab)")
    assert imagesource.describe(Found(True), False) == (True, "official (found on the engine, not built by the lab)")
    labels = tuple({**LAB, imagesource.RECIPE_LABEL: "deploy/lab/images/postgres",
                    imagesource.VERSION_LABEL: "Debian 13.8"}.items())
    assert imagesource.describe(Found(True, True, True, labels), False) == (
        True, "stand-in built by the lab from deploy/lab/images/postgres: Debian 13.8")
    assert imagesource.describe(Found(True, True, False, ()), False) == (
        True, "stand-in built by the lab from an earlier lab recipe (recipe changed since: lab.up rebuilds it)")
    other = imagesource.found_from_labels({paths.LABEL: "/root/lab", paths.HASH_LABEL: "old"}, "new", "/home/me/lab")
    assert imagesource.describe(other, False) == (
        True, "stand-in built by another lab (/root/lab) from an earlier lab recipe (recipe changed since: left as "
              "it is; that lab's lab.up rebuilds it)")


# --- honest base names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,version,ok", [
    ("debian:trixie-slim", "13.8", True), ("debian:13-slim", "13.8", True), ("debian:13.8-slim", "13.8", True),
    ("debian:13.7-slim", "13.8", False), ("debian:13.8-slim", "13.10", False), ("debian:bookworm-slim", "13.8", False),
    ("debian:12-slim", "12.13", True), ("ubuntu:24.04", "13.8", False)])
def test_a_stand_in_base_never_claims_a_version_it_does_not_contain(name, version, ok):
    assert baseimage.honest(name, version) is ok


def test_dishonest_error_names_the_fix():
    assert baseimage.dishonest_error(["debian:13.7-slim"], "13.8", "trixie") == (
        "cannot provide debian:13.7-slim: Debian's mirror serves 13.8 now, and a stand-in must not claim a version "
        "it does not contain; pull the official image where a registry answers, or name the base "
        "debian:trixie-slim (or debian:13.8-slim) in the Dockerfile")


def test_the_project_names_an_honest_base():
    assert provision.base_images() == ["debian:trixie-slim"]
    assert baseimage.suite_for("debian:trixie-slim") == "trixie"


# --- carrying the plan out (fake engine, fake pull) -----------------------------------------------------

class FakeImages:
    def __init__(self, images):
        self.images = images   # name -> labels

    def get(self, name):
        if name not in self.images:
            raise ImageNotFound(name)
        return type("Image", (), {"labels": self.images[name], "id": f"sha256:{name}"})()


class FakeClient:
    def __init__(self, images):
        self.images = FakeImages(images)


def _run(images, pullable_names=(), items=None):
    cli = FakeClient(dict(images))
    events, claims = [], []

    def pull(name, say):
        events.append(("pull", name))
        if name in pullable_names:
            cli.images.images[name] = {}
            return True
        return False

    items = items or provide.wanted(["debian:trixie-slim"], deploy=False, app_repository="djapp")
    runner = Runner(ctx=MockContext(), echo=False)
    built = []
    orig_std, orig_base = standins.build, baseimage.build
    standins.build = lambda c, item, lab_id: built.append(item.name) or 1.0
    baseimage.build = lambda r, names, lab_id, say: built.extend(names) or 1.0
    try:
        done = provide.provide(cli, runner, items, "/lab", lambda **kw: claims.append(kw), say=lambda m: None,
                               pull=pull)
    finally:
        standins.build, baseimage.build = orig_std, orig_base
    return done, events, built, claims, runner


@pytest.fixture
def debootstrap_present(monkeypatch):
    monkeypatch.setattr(host, "host_facts", lambda: host.HostFacts(False, ("debian",), frozenset(host.PACKAGES)))


def test_the_local_part_wants_the_base_and_postgres_only():
    names = [(w.name, w.kind) for w in provide.wanted(["debian:trixie-slim"], False, "djapp")]
    assert names == [("debian:trixie-slim", "base"), ("postgres:17-trixie", "stand-in")]
    deploy = [w.name for w in provide.wanted(["debian:trixie-slim"], True, "djapp")]
    assert deploy[:2] == ["debian:trixie-slim", "postgres:17-trixie"] and "haproxy:3.0-trixie" in deploy


def test_images_the_lab_did_not_build_are_kept_untouched(debootstrap_present):
    done, events, built, claims, runner = _run({"debian:trixie-slim": {}, "postgres:17-trixie": {"x": "y"}},
                                               pullable_names=("debian:trixie-slim", "postgres:17-trixie"))
    assert done["kept"] == ["debian:trixie-slim", "postgres:17-trixie"]
    assert (events, built, claims, runner.history) == ([], [], [], [])


def test_missing_images_are_pulled_and_nothing_is_built(debootstrap_present):
    done, events, built, claims, _ = _run({}, pullable_names=("debian:trixie-slim", "postgres:17-trixie"))
    assert events == [("pull", "debian:trixie-slim"), ("pull", "postgres:17-trixie")]
    assert built == [] and done["pulled"] == ["debian:trixie-slim", "postgres:17-trixie"]
    assert claims == [{"pulled": ["debian:trixie-slim"]}, {"pulled": ["postgres:17-trixie"]}]


def test_a_stand_in_is_built_only_when_the_name_cannot_be_pulled(debootstrap_present):
    done, events, built, claims, _ = _run({}, pullable_names=("postgres:17-trixie",))
    assert events == [("pull", "debian:trixie-slim"), ("pull", "postgres:17-trixie")]
    assert built == ["debian:trixie-slim"] and done["pulled"] == ["postgres:17-trixie"]
    assert claims == [{"images": ["debian:trixie-slim"]}, {"pulled": ["postgres:17-trixie"]}]


def test_offline_both_are_built_and_claimed(debootstrap_present):
    done, _, built, claims, _ = _run({})
    assert built == ["debian:trixie-slim", "postgres:17-trixie"] == done["built"]
    assert claims == [{"images": ["debian:trixie-slim"]}, {"images": ["postgres:17-trixie"]}]


def test_building_the_base_without_debootstrap_and_root_is_one_line(monkeypatch):
    monkeypatch.setattr(host, "host_facts", lambda: host.HostFacts(False, ("debian",), frozenset()))
    with pytest.raises(ToolkitError) as err:
        provide.ensure_debootstrap(Runner(ctx=MockContext(), echo=False), say=lambda m: None)
    assert str(err.value) == (
        "the Debian base image is not on this engine and cannot be pulled, and building the lab's stand-in needs "
        "debootstrap as root on Debian/Ubuntu; pull it where a registry answers (`docker pull` the Dockerfile's "
        "FROM image), or run `inv lab.up` as root on Debian/Ubuntu")


def test_lab_down_removes_only_images_this_lab_built():
    cli = FakeClient({"a": {paths.LABEL: "/lab"}, "b": {}, "c": {paths.LABEL: "/other"}})
    assert provide.lab_images(cli, ["a", "b", "c", "gone"], "/lab") == ["a"]


def test_lab_up_with_an_engine_needs_no_root_no_apt_no_debootstrap(monkeypatch, tmp_path):
    """The local part as a non-root user whose engine answers, images present: no host command at all."""
    cli = FakeClient({"debian:trixie-slim": {}, "postgres:17-trixie": {}})
    monkeypatch.setattr(provision, "_client", lambda: cli)
    monkeypatch.setattr(host, "host_facts", lambda: host.HostFacts(False, ("darwin",), frozenset()))
    monkeypatch.setattr(host, "ensure_compose_plugin", lambda runner: False)
    monkeypatch.setattr(provision, "check_ports", lambda: pytest.fail("the local part checks no deploy ports"))
    monkeypatch.setattr(host, "hadolint", lambda: pytest.fail("the local part needs no hadolint"))
    monkeypatch.setattr(paths, "LAB_DIR", tmp_path / "lab")
    monkeypatch.setattr(paths, "STATE_FILE", tmp_path / "lab" / "state.json")
    said = []
    runner = Runner(ctx=MockContext(), echo=False)
    st = provision.up(runner, say=said.append)
    assert runner.history == [] and st["images"] == [] and st["packages"] == []
    assert said[-1].startswith("lab up in ") and said[-1].endswith("s (images: 2 kept)")


def _base_build(monkeypatch, tmp_path, name, version):
    import shlex

    from invoke import Result

    monkeypatch.setattr(paths, "LAB_DIR", tmp_path)
    work, rootfs = tmp_path / "base-build", tmp_path / "base-build" / "rootfs"
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
    (rootfs / "etc/apt/apt.conf.d").mkdir(parents=True)
    run = {shlex.join(["rm", "-rf", str(work)]): Result(), shlex.join(["mkdir", "-p", str(work)]): Result(),
           shlex.join(baseimage.debootstrap_argv("trixie", rootfs)): Result(),
           shlex.join(["cat", str(rootfs / "etc" / "debian_version")]): Result(version + "\n")}
    runner = Runner(ctx=MockContext(run=run, repeat=True), echo=False)
    return runner


def test_a_base_is_never_imported_under_a_point_release_it_does_not_hold(monkeypatch, tmp_path):
    runner = _base_build(monkeypatch, tmp_path, "debian:13.7-slim", "13.8")
    with pytest.raises(ToolkitError) as err:
        baseimage.build(runner, ["debian:13.7-slim"], "/lab", say=lambda m: None)
    assert str(err.value) == baseimage.dishonest_error(["debian:13.7-slim"], "13.8", "trixie")
    assert not [cmd for _, cmd in runner.history if "docker import" in cmd]
    assert runner.history[-1][1].startswith("rm -rf ")  # the work directory is always removed


def test_the_base_records_the_version_it_holds(monkeypatch, tmp_path):
    import shlex

    runner = _base_build(monkeypatch, tmp_path, "debian:trixie-slim", "13.8")
    monkeypatch.setattr(Runner, "run", _record_all(Runner.run))
    baseimage.build(runner, ["debian:trixie-slim"], "/lab", say=lambda m: None)
    [imported] = {cmd for _, cmd in runner.history if cmd.startswith("docker import")}
    argv = shlex.split(imported)
    assert argv[-1] == "debian:trixie-slim"
    assert f'LABEL {imagesource.VERSION_LABEL}="Debian 13.8"' in argv
    assert f'LABEL {imagesource.RECIPE_LABEL}="debootstrap --variant=minbase trixie ({baseimage.MIRROR})"' in argv


def _record_all(real):
    """Runner.run for commands the MockContext was not told about (find, tar, docker import): record, succeed."""
    from invoke import Result

    def run(self, argv, **kw):
        try:
            return real(self, argv, **kw)
        except NotImplementedError:
            import shlex

            self.history.append((self.where, shlex.join(argv)))
            return Result()
    return run
