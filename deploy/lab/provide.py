"""`inv lab.up`'s images step: every image the project names is found, pulled, or built as a stand-in.

Which names: the Dockerfile's FROM lines (the Debian base) and the compose file's defaults (Postgres); with
``deploy`` also every stand-in recipe under deploy/lab/images (HAProxy for the Swarm proxy, ...). What to do
with each is deploy.lab.imagesource.decide; this module carries it out and reports what it did.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.core.errors import ToolkitError
from deploy.lab import baseimage, host, imagesource, paths, standins
from deploy.lab.imagesource import BUILD, KEEP, PULL, PULL_OR_BUILD


@dataclass(frozen=True)
class Wanted:
    name: str
    kind: str             # "base" (debootstrap recipe), "stand-in" (deploy/lab/images/<dir>) or "image" (no recipe)
    want_hash: str | None  # the recipe's hash (None without a recipe)
    recipe: object = None  # the StandIn for kind "stand-in"


def wanted(bases: list[str], deploy: bool, app_repository: str) -> list[Wanted]:
    """Pure-ish (reads the recipes): the images to provide, bases first (the stand-ins build FROM them)."""
    recipes = {s.name: s for s in standins.stand_ins()}
    names = list(bases) + [n for n in standins.project_images() if n.split(":")[0] != app_repository]
    if deploy:
        names += list(recipes)
    out = []
    for name in dict.fromkeys(names):
        if baseimage.is_base(name) and name in bases:
            out.append(Wanted(name, "base", baseimage.recipe_hash(baseimage.suite_for(name))))
        elif name in recipes:
            out.append(Wanted(name, "stand-in", recipes[name].hash, recipes[name]))
        else:
            out.append(Wanted(name, "image", None))
    return out


def plan(cli, items: list[Wanted], lab_id: str) -> list[tuple[Wanted, str]]:
    """(item, action) for every wanted image, from what the engine holds now (no side effect)."""
    return [(w, imagesource.decide(found(cli, w, lab_id), imagesource.pullable(w.name), w.kind != "image"))
            for w in items]


def found(cli, w: Wanted, lab_id: str | None = None) -> imagesource.Found:
    return imagesource.found_from_labels(standins.image_labels(cli, w.name), w.want_hash, lab_id)


def provide(cli, runner, items: list[Wanted], lab_id: str, claim, say=print, pull=None) -> dict:
    """Carry the plan out; return {"pulled": [...], "built": [...], "kept": [...], "absent": [...]}."""
    pull = pull or imagesource.pull
    done = {"pulled": [], "built": [], "kept": [], "absent": []}
    for w, action in plan(cli, items, lab_id):
        if action == KEEP:
            done["kept"].append(w.name)
            continue
        if action in (PULL, PULL_OR_BUILD) and imagesource.pullable(w.name) and pull(w.name, say):
            done["pulled"].append(w.name)
            claim(pulled=[w.name])
            continue
        if action == PULL:
            done["absent"].append(w.name)
            say(f"note: {w.name} is named by the project, is not on this engine, cannot be pulled, and the lab "
                "has no recipe for it")
            continue
        if action == BUILD:
            say(f"{w.name}: a lab-only name (never pulled); building it")
        _build(cli, runner, w, lab_id, say)
        done["built"].append(w.name)
        claim(images=[w.name])
    return done


def _build(cli, runner, w: Wanted, lab_id: str, say) -> None:
    if w.kind == "stand-in":
        say(f"building stand-in {w.name} from {standins.recipe_path(w.recipe)}")
        seconds = standins.build(cli, w.recipe, lab_id)
        say(f"built {w.name} in {seconds:.0f}s")
        return
    ensure_debootstrap(runner, say)
    seconds = baseimage.build(runner, [w.name], lab_id, say)
    say(f"base image {w.name} built in {seconds:.0f}s")


def ensure_debootstrap(runner, say) -> None:
    """debootstrap is needed only now (a base could not be pulled): install it as root on Debian, else stop."""
    facts = host.host_facts()
    packages = host.missing_packages(facts, ["debootstrap"])
    if not packages:
        return
    if not (facts.is_root and facts.debian_like):
        raise ToolkitError("the Debian base image is not on this engine and cannot be pulled, and building the "
                           "lab's stand-in needs debootstrap as root on Debian/Ubuntu; pull it where a registry "
                           "answers (`docker pull` the Dockerfile's FROM image), or run `inv lab.up` as root on "
                           "Debian/Ubuntu")
    host.install(runner, packages, say)


def status_rows(cli, items: list[Wanted], pulled: list[str], lab_id: str) -> list[tuple[str, bool, str]]:
    """One `lab.status` row per image: official (pulled / found) or stand-in (built by the lab, from which recipe)."""
    rows = []
    for w in items:
        f = found(cli, w, lab_id) if cli else imagesource.Found(False)
        ok, text = imagesource.describe(f, w.name in pulled)
        rows.append((f"image {w.name}", ok, text))
    return rows


def lab_images(cli, names: list[str], lab_id: str) -> list[str]:
    """Of ``names``, those whose image this lab (``lab_id``) built: the only ones `lab.down` may remove."""
    return [n for n in names if (standins.image_labels(cli, n) or {}).get(paths.LABEL) == lab_id]
