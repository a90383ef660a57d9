"""Release bridging of static files: the image of a release also carries the hashed static files of the previous
N successful releases (STATIC_RELEASES, default 2), so a page of any of them finds its CSS/JS on every task.

Why this design (issue 13):
- After a rollout no task of the previous release exists, yet a page still open in a browser (or cached by a CDN)
  asks for ITS hashed names. Only the new tasks can answer, so the new image must hold those files. A shared asset
  volume or store would need a filesystem every node shares (or an object store) and a fill step before each
  rollout; falling back at the proxy to the other release's tasks works only while they exist (see (b) below).
- Each image knows exactly its OWN hashed files: collectstatic's manifest (STATIC_ROOT/staticfiles.json of
  ManifestStaticFilesStorage) names them. Bridged files are copied next to them, never into the manifest, so the
  carried set is the previous N releases' own files, not a chain that grows with every release.
- It is a second, small build on top of the built app image (``dockerfile``): a gathering stage FROM the new image
  copies each previous image's STATIC_ROOT (pinned by digest, as the audit log records it) into /tmp and keeps
  the files its manifest names that the new release does not have; the final stage is the new image plus ONE
  layer with those files. The project's Dockerfile stays untouched (plain `docker build .` still works, any N, no
  fixed slots), the gathering stage never reaches the final image, and an unchanged file is not carried twice.
- A first deploy (no previous release) builds nothing more; a previous image without a manifest contributes
  nothing; a previous image gone from the registry is skipped with a warning line (the deploy goes on).
- Bridged files live in STATIC_ROOT under their hashed names: the entrypoint's `file` route serves them at the same
  speed as the release's own, with the same year-long immutable caching.
(b) During a rollout, old and new tasks serve side by side: the proxy retries a 404 of a hashed name on another
task (deploy.ship.edge_cfg's `static` backend), so a new page's files reach a new task.
"""

from __future__ import annotations

import io
import json
import re
import sys
import tarfile

from deploy.core.errors import ToolkitError

STATIC_ROOT = "/app/staticfiles"   # the image contract (UWSGI_STATIC_MAP, djdeploy_django.contract)
MANIFEST = "staticfiles.json"
GATHER = "/tmp/djdeploy-bridge"   # the previous releases' STATIC_ROOTs (root-owned copies)
OUT = "/tmp/djdeploy-bridged"     # what the final layer carries (written by the image's user: /tmp is 1777)
LABEL = "org.djdeploy.bridged"     # the tags whose files an image carries (audit and tests read it)

# Runs in the gathering stage (the new image's Python): for each previous release (newest first), copy the files its
# manifest names that the new release does not have and no newer previous release provided.
GATHER_SCRIPT = """\
import json, os, shutil, sys
root, out = sys.argv[1], sys.argv[2]
def own(d):
    try:
        with open(os.path.join(d, "staticfiles.json")) as fh:
            return [n for n in json.load(fh).get("paths", {}).values() if ".." not in n.split("/") and not n.startswith("/")]
    except (OSError, ValueError, AttributeError):
        return []
os.makedirs(out, exist_ok=True)
have, copied = set(own(root)), 0
for d in sys.argv[3:]:
    for name in own(d):
        src, dst = os.path.join(d, name), os.path.join(out, name)
        if name in have or not os.path.isfile(src):
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        have.add(name)
        copied += 1
print("bridged", copied, "hashed static files")
"""


def previous_releases(rows: list, keep: int, current: str) -> list:
    """(tag, digest) of the last ``keep`` distinct successful releases in the audit log other than ``current``,
    newest first: the rollback targets (the list deploy.ops.prune keeps), each pinned by the digest it served."""
    from deploy.ops.prune import keep_tags

    tags = [t for t in keep_tags(rows, keep + 1) if t != current][:keep]
    found = {}
    for row in rows:
        tag = row.get("image", "").partition("@")[0].rpartition(":")[2]
        digest = row.get("digest", "")
        if row.get("result") == "ok" and tag in tags and digest.startswith("sha256:"):
            found[tag] = digest   # the last successful row of the tag wins
    return [(t, found[t]) for t in tags if t in found]


def dockerfile(base: str, previous: list, tags: list = ()) -> str:
    """The bridging build: FROM ``base`` (the new image) + one layer of the previous images' own hashed files.
    ``previous``: pinned refs (repo@sha256:...), newest first; ``tags``: their release tags (a label)."""
    lines = [f"FROM {base} AS djdeploy-new"]
    dirs = []
    for n, ref in enumerate(previous, 1):
        lines.append(f"COPY --from={ref} {STATIC_ROOT}/ {GATHER}/previous-{n}/")
        dirs.append(f"{GATHER}/previous-{n}")
    argv = ["python3", "-c", GATHER_SCRIPT, STATIC_ROOT, OUT, *dirs]
    lines += [f"RUN {json.dumps(argv)}", f"FROM {base}", f"COPY --from=djdeploy-new {OUT}/ {STATIC_ROOT}/",
              f"LABEL {LABEL}={json.dumps(' '.join(tags))}"]
    return "\n".join(lines) + "\n"


def context(text: str) -> io.BytesIO:
    """A build context holding only the Dockerfile (``mkdir out`` is done by the script, so out/ may be empty)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        raw = text.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    buf.seek(0)
    return buf


def apply(cfg, manager, local_ref: str, tag: str, out=sys.stdout, base: str = "") -> str:
    """Rebuild ``local_ref`` (the just built image of ``tag``) with the previous releases' hashed static files, as
    the environment's audit log on the manager names them; return a note for the timing table ("+N ..." when built).
    ``base``: build FROM this pinned image instead (a rollback's registry digest) and leave `latest` alone."""
    from deploy.ship import swarm

    keep = getattr(cfg, "static_releases", 2)
    if keep < 1:
        return "no bridging (STATIC_RELEASES=0)"
    log = manager.run(swarm.audit_show_cmd(cfg, 1000), hide=True, check=False, timeout=cfg.command_timeout)
    previous = previous_releases(swarm.parse_audit(log.stdout if log.ok else ""), keep, tag)
    if not previous:
        return "no previous release to bridge"
    from deploy.core import engine

    cli, pulled = engine.client(timeout=600), []
    try:
        with engine.sdk_errors(f"static bridging of {local_ref}", "check the engine and the registry, then deploy again"):
            found = [(t, ref) for t, ref in ((t, f"{cfg.repository}@{d}") for t, d in previous)
                     if _present(cli, cfg, ref, out, pulled)]
            if not found:
                return "no previous image found to bridge"
            if base and not _present(cli, cfg, base, out, []):
                raise ToolkitError(f"the image {base} of the release is neither local nor in the registry; "
                                   f"pick another release (`inv audit --env {cfg.env}`)")
            text = dockerfile(base or local_ref, [r for _, r in found], [t for t, _ in found])
            count = _build(cli, local_ref, text, latest=not base)
            _forget(cli, pulled)
    finally:
        cli.close()
    return f"+{count} hashed static files of {' '.join(t for t, _ in found)}"


def _present(cli, cfg, ref: str, out, pulled: list) -> bool:
    """The pinned image is local (built or pulled here) or is pulled now (credentials in the header; into ``pulled``)."""
    from docker.errors import APIError, ImageNotFound

    try:
        cli.images.get(ref)
        return True
    except ImageNotFound:
        pass
    repo, _, digest = ref.partition("@")
    try:
        cli.api.pull(repo, tag=digest, auth_config={"username": cfg.registry_user, "password": cfg.registry_password})
        cli.images.get(ref)
        pulled.append(ref)
        return True
    except (APIError, ImageNotFound) as exc:
        out.write(f"warning: previous release {ref} is not in the registry ({getattr(exc, 'explanation', '') or exc}); "
                  f"its static files are not bridged\n")
        return False


def _forget(cli, refs: list) -> None:
    """Images pulled only to read their files are not kept on this machine (`inv prune` removed them); best effort."""
    from docker.errors import APIError

    for ref in refs:
        try:
            cli.images.remove(ref)
        except APIError:
            pass


def _build(cli, local_ref: str, text: str, latest: bool = True) -> int:
    """Build ``text`` as ``local_ref`` (and latest); return how many files the new layer carries."""
    repo, _, tag = local_ref.rpartition(":")
    image_id, log = None, []
    for chunk in cli.api.build(fileobj=context(text), custom_context=True, tag=local_ref, rm=True, forcerm=True,
                               decode=True):
        if "error" in chunk:
            raise ToolkitError(f"static bridging of {local_ref} failed: {chunk['error'].strip()}; deploy again "
                               f"(or set STATIC_RELEASES=0 to ship without the previous releases' static files)")
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        log.append(chunk.get("stream", ""))
    if latest:
        cli.images.get(image_id or local_ref).tag(repo, "latest")
    found = re.search(r"^bridged (\d+) hashed static files$", "".join(log), re.M)
    return int(found.group(1)) if found else 0
