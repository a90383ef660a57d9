"""Docker SDK failures in `inv build` and `inv smoke` are one line naming the step and the fix (no traceback):
the SDK client is faked and raises the SDK's own exceptions."""

import io

import docker.errors
import pytest
import requests

from deploy.core.errors import ToolkitError
from deploy.image import builder, smoke


class Resp:
    status_code = 500
    reason = "Server Error"
    url = "http+docker://localhost/v1.41/build"


def api_error(explanation, status=500):
    resp = Resp()
    resp.status_code = status
    return docker.errors.APIError("500 Server Error", response=resp, explanation=explanation)


class Client:
    """Raises ``exc`` from the call named ``at`` (build, get, run, reload, stop, remove)."""

    def __init__(self, at, exc):
        self.at, self.exc = at, exc
        self.api = self
        self.images = self
        self.containers = self
        self.removed = False

    def _maybe(self, name):
        if self.at == name:
            raise self.exc

    def build(self, **kw):
        self._maybe("build")
        return iter([{"stream": "Step 1/1\n"}])

    def get(self, ref):
        self._maybe("get")
        return type("Image", (), {"id": "sha256:1", "attrs": {"Size": 1}, "tag": lambda *a: None})()

    def run(self, *a, **kw):
        self._maybe("run")
        client = self

        class Container:
            id = "c0ffee0000001234"
            status = "running"

            def reload(self):
                client._maybe("reload")

            def logs(self, **kw):
                return b""

            def remove(self, force=False):
                client.removed = True
                client._maybe("remove")
        return Container()

    def close(self):
        pass


@pytest.fixture
def sdk(monkeypatch):
    def install(at, exc):
        cli = Client(at, exc)
        monkeypatch.setattr("deploy.core.engine.client", lambda timeout=None: cli)
        monkeypatch.setattr(builder.localenv, "load", lambda: {"APP_IMAGE": "djapp"})
        return cli
    return install


BUILD_FIX = "check the engine (`docker info`) and rerun `inv build`"
LOST = "start Docker (or, for this repository's test lab, run `inv lab.up`), then rerun"


@pytest.mark.parametrize("exc,message", [
    (api_error("no space left on device"),
     f"image build of djapp:t failed: the Docker engine answered 500 (no space left on device); {BUILD_FIX}"),
    (docker.errors.BuildError("step 3 failed", build_log=[]),
     f"image build of djapp:t failed: the build stopped (step 3 failed); {BUILD_FIX}"),
    (requests.exceptions.ConnectionError("Connection aborted."),
     f"image build of djapp:t failed: lost the connection to the Docker engine (Connection aborted.); {LOST}"),
    (requests.exceptions.ReadTimeout("read timed out"),
     "image build of djapp:t failed: the Docker engine did not answer in time; check `docker info` (a busy or "
     "stuck engine), then rerun"),
])
def test_build_sdk_errors_are_one_line(sdk, exc, message):
    sdk("build", exc)
    with pytest.raises(ToolkitError) as err:
        builder.build(tag="t", out=io.StringIO())
    assert str(err.value) == message


def test_build_image_missing_after_the_build_is_one_line(sdk):
    sdk("get", docker.errors.ImageNotFound("No such image: djapp:t"))
    with pytest.raises(ToolkitError) as err:
        builder.build(tag="t", out=io.StringIO())
    assert str(err.value) == f"image build of djapp:t failed: image not found (No such image: djapp:t); {BUILD_FIX}"


def test_smoke_lookup_error_is_one_line(sdk):
    sdk("get", api_error("client version 1.99 is too new", status=400))
    with pytest.raises(ToolkitError) as err:
        smoke.run("djapp:x", out=io.StringIO())
    assert str(err.value) == ("smoke test of djapp:x: looking up the image failed: the Docker engine answered 400 "
                              "(client version 1.99 is too new); check the engine (`docker info`)")


def test_smoke_start_error_names_the_port(sdk, monkeypatch):
    monkeypatch.setattr(smoke, "free_port", lambda: 41234)
    sdk("run", api_error("driver failed programming external connectivity: port is already allocated"))
    with pytest.raises(ToolkitError) as err:
        smoke.run("djapp:x", out=io.StringIO())
    assert str(err.value) == (
        "smoke test of djapp:x: starting the container failed: the Docker engine answered 500 (driver failed "
        "programming external connectivity: port is already allocated); check the engine (`docker info`) and that "
        "127.0.0.1:41234 is free, then rerun")


def test_smoke_engine_lost_while_checking_still_removes_the_container(sdk):
    cli = sdk("reload", requests.exceptions.ConnectionError("Connection refused"))
    with pytest.raises(ToolkitError) as err:
        smoke.run("djapp:x", out=io.StringIO())
    assert str(err.value) == (f"smoke test of djapp:x: checking the container failed: lost the connection to the Docker "
                              f"engine (Connection refused); {LOST}")
    assert cli.removed


def test_smoke_container_that_cannot_be_removed_is_named(sdk):
    out = io.StringIO()
    cli = sdk("remove", docker.errors.NotFound("gone"))
    cli.at = "reload"
    cli.exc = docker.errors.NotFound("No such container: c0ffee")
    with pytest.raises(ToolkitError) as err:
        smoke.run("djapp:x", out=out)
    assert str(err.value) == ("smoke test of djapp:x: checking the container failed: the Docker engine refused the "
                              "request (No such container: c0ffee); check the engine (`docker info`) and rerun `inv smoke`")
    cli.at = "remove"
    cli.exc = docker.errors.APIError("409 Conflict", explanation="removal already in progress")
    with pytest.raises(smoke.SmokeFailed):
        smoke.run("djapp:x", out=out, boot_timeout=0.1)
    assert out.getvalue().endswith("warning: could not remove the smoke container c0ffee000000 (409 Conflict "
                                   "(\"removal already in progress\")); "
                                   "remove it with `docker rm -f c0ffee000000`\n")
