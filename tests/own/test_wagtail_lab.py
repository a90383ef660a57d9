"""The Wagtail site from `wagtail start` (the session's, built once: tests/own/fixtures.py) on the lab Swarm, deployed
from its own directory with the pip-installed toolkit (`inv deploy --env lab`), as its users would run it: HTTPS with
certificates from this module's Pebble (TLS_MODE=acme, https://djlab.test:<port>), the stack's Postgres, media on
the lab S3 (IMAGE_EXTRAS=s3; bucket, endpoint and addressing as app variables, the keys as app secrets) and
Wagtail's dynamic image serve view added to its urls.py as Wagtail's docs say. One stack for the module, in order:

- a superuser from `inv manage --env lab -- createsuperuser --noinput` (the password never printed), then a real
  browser signs into the Wagtail admin by the site's name and uploads an image larger than Django's in-memory
  upload limit through /admin/images/add/ (so it passes through the read-only container's /tmp);
- the rendition the admin's URL generator names is answered by every replica, one of them not the one that took
  the upload (which task answered: a probe in the query string, found in that task's uWSGI request log); the bytes
  are a PNG of the requested size and the object on S3; the original on S3 is the uploaded file;
- a one-line change deployed, then `inv rollback --env lab`, while a client loads the home page: 0 failed, 0 non-2xx,
  both versions; after each, the new tasks serve the rendition and make a new one from the original on S3.
"""

from __future__ import annotations

import io
import secrets
import sys

import pytest

from tests.own.conftest import ROOT, add_serve_view, create_superuser, git_commit, make_png
from tests.uploads.conftest import IN_CI, lab_problem, start_store, wait_for

sys.path.insert(0, str(ROOT / "tests" / "ship"))
sys.path.insert(0, str(ROOT / "tests"))
from shiphelpers import (HOST, LABEL, Env, docker, dump_logs, remove_pushed_images,  # noqa: E402 (bench/ on the path)
                         remove_stack)
from browser import (chromium, retry_network_change, wagtail_login, wagtail_rendition_path,  # noqa: E402,F401
                     wagtail_upload_image)
from loadgen import LoadGenerator  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.engine]
BUCKET = "media"
SIZES = ((120, 80), (60, 40), (90, 90))    # a rendition before the redeploy, one after it, one after the rollback
STATE: dict = {}


class Lab:
    """The site's lab environment: `inv` in the site with DJDEPLOY_ENV_DIR, HTTPS reads by the site's name."""

    def __init__(self, site, env, endpoint: str):
        from shiphelpers import Site

        self.site, self.env, self.endpoint = site, env, endpoint
        self.https = Site(env)

    def inv(self, *args, environ: dict | None = None, **kw):
        out = self.site.inv(*args, environ={"DJDEPLOY_ENV_DIR": str(self.env.dir), **(environ or {})}, **kw)
        print(f"--- inv {' '.join(args)}\n{out.stdout[-2500:]}")
        return out

    def get(self, path: str):
        with self.https.opener.open(self.https.base + path, timeout=20) as resp:
            return resp.status, resp.headers, resp.read()

    def tasks(self) -> list[str]:
        return docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.env.stack}_app").stdout.split()

    def logged_by(self, text: str) -> list[str]:
        """The running app tasks whose uWSGI request log holds ``text``."""
        found = []
        for task in self.tasks():
            out = docker("logs", task, check=False, timeout=30)
            if text in out.stdout + out.stderr:
                found.append(task)
        return found

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="lab",
                            aws_secret_access_key="lab")   # moto accepts any key

    def objects(self, prefix: str) -> dict[str, bytes]:
        client = self.s3()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
        return {k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


@pytest.fixture(scope="module")
def lab(wagtail_built, tmp_path_factory, request):
    from deploy.core.runner import Runner
    from deploy.lab import deploy_env, s3
    from invoke import Context

    problem = lab_problem()
    if problem:
        (pytest.fail if IN_CI else pytest.skip)(f"needs the lab: {problem}")
    site = wagtail_built
    add_serve_view(site)
    env = Env(tmp_path_factory.mktemp("wagtaillab"))       # stack djtest<hex>, its own Pebble (shiphelpers)
    store, network = s3.S3Spec(prefix=env.stack, labels=(("djdeploy.test", "ship"),)), f"{env.stack}-net"
    try:
        docker("network", "create", "--driver", "overlay", "--attachable", "--label", LABEL, network)
        endpoint = start_store(store, network, BUCKET)
        env.write(APP_IMAGE=site.image, NETWORK=network, **deploy_env.s3_keys(BUCKET))
        yield Lab(site, env, endpoint)
        if request.session.testsfailed:
            dump_logs(env.stack)
    finally:
        remove_stack(env.stack)
        env.remove_ca()
        s3.remove(Runner(ctx=Context(), echo=False), store)
        docker("network", "rm", network, check=False)
        remove_pushed_images(site.image)


def test_the_site_deploys_over_https_with_its_media_on_s3(lab):
    out = lab.inv("deploy", "--env", "lab", timeout=900).stdout
    assert "is serving on lab" in out, out[-3000:]
    status, headers, body = lab.get("/")
    assert status == 200 and b"Wagtail" in body, (status, body[:300])
    STATE["v1"] = headers["X-App-Version"]


def test_a_real_browser_signs_into_the_wagtail_admin_and_uploads_an_image(lab, chromium, tmp_path):
    assert "v1" in STATE, "the deploy failed"
    password = create_superuser(lab.site, "lab", {"DJDEPLOY_ENV_DIR": str(lab.env.dir)})
    photo = tmp_path / "harbour.png"
    STATE["original"] = make_png(photo)
    base = f"https://{HOST}:{lab.env.https_port}"
    driver = chromium(host=HOST, ca_pem=lab.env.ca_root).driver
    retry_network_change(driver, lambda: wagtail_login(driver, base, "wagadmin", password))
    image_id = wagtail_upload_image(driver, base, photo, "Harbour " + secrets.token_hex(3))
    STATE["uploader"] = wait_for(lambda: lab.logged_by("POST /admin/images/add/"), 20,
                                 "the upload's line in a task's request log")
    STATE["renditions"] = [wagtail_rendition_path(driver, base, image_id, w, h) for w, h in SIZES]


def served_by_every_task(lab, path: str, size: tuple) -> dict:
    """GET ``path`` (a probe in the query string each time) until every running task answered; check each answer
    is a PNG of ``size``; return {task: bytes}."""
    from PIL import Image

    seen: dict = {}

    def every_task():
        probe = secrets.token_hex(8)
        status, headers, body = lab.get(f"{path}?probe={probe}")
        assert status == 200 and headers["Content-Type"] == "image/png", (status, headers)
        with Image.open(io.BytesIO(body)) as img:
            assert (img.format, img.size) == ("PNG", size)
        who = wait_for(lambda: lab.logged_by(probe), 20, f"probe {probe} in a task's request log")
        seen[who[0]] = body
        return set(seen) >= set(lab.tasks()) and len(seen) >= 2
    wait_for(every_task, 60, f"every replica to answer {path}")
    return seen


def test_the_rendition_is_served_by_another_replica_than_the_uploader_from_s3(lab):
    assert "renditions" in STATE, "the upload failed"
    seen = served_by_every_task(lab, STATE["renditions"][0], SIZES[0])
    assert set(seen) - set(STATE["uploader"]), f"only the uploader {STATE['uploader']} answered"
    (served,) = set(seen.values())                 # every replica served the same bytes
    stored = lab.objects("images/")
    assert served in stored.values(), f"the rendition is not on S3: {sorted(stored)}"
    print(f"uploaded through {STATE['uploader']}; {STATE['renditions'][0]} answered by {sorted(seen)}; "
          f"on S3: {sorted(stored)}")
    originals = lab.objects("original_images/")
    assert list(originals.values()) == [STATE["original"]], sorted(originals)
    STATE["served"] = served


def still_there(lab, rendition: int) -> None:
    """The new tasks serve the first rendition (the same bytes) and make rendition number ``rendition`` from the
    original on S3; the original is unchanged."""
    assert set(served_by_every_task(lab, STATE["renditions"][0], SIZES[0]).values()) == {STATE["served"]}
    served_by_every_task(lab, STATE["renditions"][rendition], SIZES[rendition])
    assert list(lab.objects("original_images/").values()) == [STATE["original"]]


def test_a_redeploy_and_a_rollback_under_load_lose_no_request_and_keep_the_upload(lab):
    assert "served" in STATE, "the rendition was not served"
    env = lab.env
    gen = LoadGenerator(env.https_port, "/", rate=20, seconds=400, host_header=f"{HOST}:{env.https_port}",
                        tls=env.tls_context()).start()
    try:
        urls = lab.site.path / "mysite" / "urls.py"
        urls.write_text(urls.read_text() + "# one more line\n")
        git_commit(lab.site.path)
        assert "is serving on lab" in lab.inv("deploy", "--env", "lab", timeout=900).stdout
        v2 = lab.get("/")[1]["X-App-Version"]
        assert v2 != STATE["v1"]
        still_there(lab, 1)
        assert "is serving on lab" in lab.inv("rollback", "--env", "lab", "--yes", timeout=600).stdout
        assert lab.get("/")[1]["X-App-Version"] == STATE["v1"]
        still_there(lab, 2)
    finally:
        stats = gen.stop()
    print("load:", stats.summary())
    assert (stats.failed, stats.non2xx) == (0, 0) and stats.sent >= 100, stats.summary()
    assert set(stats.versions) == {STATE["v1"], v2}, stats.summary()
