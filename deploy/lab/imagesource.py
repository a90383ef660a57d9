"""Where each image the project names comes from: found on the engine, pulled, or built as a lab stand-in.

The rules (pure: ``decide``):
- an image a name points to that no lab built (no ``djdeploy.lab`` label) is never replaced, retagged or
  removed: it is the user's (official, pulled earlier, or their own);
- a missing name is pulled when a registry answers (Docker Hub, or the engine's ``registry-mirrors``);
- a stand-in is built only when the name is absent and cannot be pulled (or it is this lab's own stand-in
  and its recipe changed: then an official image is pulled in its place if one can be, else it is rebuilt;
  another lab's stand-in is left as it is);
- names in the lab's own namespaces (``djdeploy-lab/...``) are local only: never pulled from anywhere.

``pull`` talks to the engine through the SDK with a short read timeout and prints one line per finished layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from deploy.lab import paths

KEEP, PULL, BUILD, PULL_OR_BUILD = "keep", "pull", "build", "pull-or-build"
LOCAL_PREFIXES = ("djdeploy",)   # first path component: djdeploy-lab/..., djdeploy-bench/... (never pulled)
PULL_TIMEOUT = 20                # seconds without any answer from the engine during a pull
VERSION_LABEL = "djdeploy.lab.version"   # what a stand-in really contains, e.g. "Debian 13.8"
RECIPE_LABEL = "djdeploy.lab.recipe"     # how it was made, e.g. "deploy/lab/images/postgres"


@dataclass(frozen=True)
class Found:
    """What a name points to on the engine."""

    present: bool
    lab: bool = False       # built by a lab (label djdeploy.lab with a value)
    current: bool = False   # built from the recipe we have now (hash label matches)
    labels: tuple = ()      # (key, value) pairs of the image's labels
    mine: bool = True       # built by this lab (label value = this lab's directory); another lab's is not ours

    def label(self, key: str) -> str:
        return dict(self.labels).get(key, "")


def found_from_labels(labels: dict | None, want_hash: str | None, lab_id: str | None = None) -> Found:
    """Pure: ``labels`` is None for a missing image, {} for an image without labels."""
    if labels is None:
        return Found(False)
    lab = bool(labels.get(paths.LABEL))
    current = lab and want_hash is not None and labels.get(paths.HASH_LABEL) == want_hash
    mine = lab and (lab_id is None or labels.get(paths.LABEL) == lab_id)
    return Found(True, lab, current, tuple(sorted(labels.items())), mine)


def pullable(name: str) -> bool:
    """Pure: may this name be pulled from a registry? Not the lab's own local-only names."""
    first = name.split("/", 1)[0] if "/" in name else ""
    return not first.startswith(LOCAL_PREFIXES)


def decide(found: Found, can_pull: bool, has_recipe: bool) -> str:
    """Pure: what to do for one name (KEEP, PULL, BUILD or PULL_OR_BUILD)."""
    if found.present and (not found.lab or found.current or not found.mine or not has_recipe):
        return KEEP  # not the lab's, current, or another lab's (a second lab never rebuilds the first one's images)
    if not has_recipe:
        return PULL
    return PULL_OR_BUILD if can_pull else BUILD


def describe(found: Found, pulled_by_lab: bool) -> tuple[bool, str]:
    """Pure: (present?, the status text of one image) for `inv lab.status`."""
    if not found.present:
        return False, "MISSING (lab.up pulls it, or builds a stand-in when it cannot be pulled)"
    if not found.lab:
        how = "pulled by the lab" if pulled_by_lab else "found on the engine, not built by the lab"
        return True, f"official ({how})"
    made = found.label(RECIPE_LABEL) or "an earlier lab recipe"
    what = found.label(VERSION_LABEL)
    who = "the lab" if found.mine else f"another lab ({found.label(paths.LABEL)})"
    text = f"stand-in built by {who} from {made}" + (f": {what}" if what else "")
    if found.current:
        return True, text
    return True, text + (" (recipe changed since: lab.up rebuilds it)" if found.mine
                         else " (recipe changed since: left as it is; that lab's lab.up rebuilds it)")


def split_ref(name: str) -> tuple[str, str]:
    """Pure: ``repo[:tag]`` -> (repo, tag); a port in the registry host is not a tag."""
    repo, _, tag = name.rpartition(":")
    if not repo or "/" in tag:
        return name, "latest"
    return repo, tag


def pull_error(name: str, reason: str) -> str:
    return f"cannot pull {name} ({reason})"


def pull(name: str, say=print, timeout: int = PULL_TIMEOUT) -> bool:
    """Pull ``name`` through the engine; True when it is now present. One line per finished layer."""
    from deploy.core import engine
    from deploy.core.errors import EngineUnavailable

    try:
        cli = engine.client(timeout=timeout)
    except EngineUnavailable as exc:
        say(pull_error(name, str(exc)))
        return False
    repo, tag = split_ref(name)
    say(f"pulling {name} (Docker Hub or the engine's registry mirror; {timeout}s without an answer gives up)")
    started, layers, done = time.monotonic(), set(), 0
    try:
        for event in cli.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                say(pull_error(name, _first_line(event["error"])))
                return False
            status, layer = event.get("status", ""), event.get("id", "")
            if status in ("Pulling fs layer", "Waiting", "Already exists") and layer:
                layers.add(layer)
            if status in ("Pull complete", "Already exists"):
                done += 1
                say(f"  {name}: layer {layer} {status.lower()} ({done}/{len(layers)})")
        cli.images.get(name)
    except Exception as exc:  # noqa: BLE001 - any engine/network failure means: cannot pull here
        say(pull_error(name, _first_line(str(exc)) or type(exc).__name__))
        return False
    finally:
        cli.close()
    say(f"pulled {name} in {time.monotonic() - started:.1f}s")
    return True


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0][:200] if (text or "").strip() else ""
