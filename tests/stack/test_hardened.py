"""The hardened runtime of `inv up` (CIS Docker Benchmark v1.6.0: 5.4 capabilities, 5.11 memory, 5.12 CPU
priority, 5.13 read-only root filesystem, 5.26 no-new-privileges, 5.29 PIDs), inspected on the real containers,
and the app still serving pages, static files and an admin login POST while so restricted."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest

from stackhelpers import create_superuser

pytestmark = pytest.mark.engine


def inspect(stack, service: str) -> dict:
    cid = stack.compose("ps", "--quiet", service).stdout.strip()
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


@pytest.mark.parametrize("service", ["app", "db"])
def test_containers_run_read_only_without_capabilities_with_limits(up, service):
    host = inspect(up, service)["HostConfig"]
    assert host["ReadonlyRootfs"] is True                                  # 5.13
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")          # 5.4
    assert "no-new-privileges:true" in host["SecurityOpt"]                 # 5.26
    assert host["Memory"] == 512 * 1024 * 1024                             # 5.11
    assert host["NanoCpus"] == 1_000_000_000                               # CPU cap
    assert host["CpuShares"] == 512                                        # 5.12 (not the default 1024)
    assert host["PidsLimit"] == 200                                        # 5.29
    assert set(host["Tmpfs"]) >= {"/tmp"}
    assert host["Privileged"] is False


def test_limits_come_from_the_environment(up, stack_session, request):
    """APP_MEMORY/APP_CPUS/APP_CPU_SHARES/APP_PIDS reach the engine (a second project, same image)."""
    main = up
    other = stack_session("lim", APP_MEMORY="300m", APP_CPUS="0.5", APP_CPU_SHARES="256", APP_PIDS="150")
    request.node.stacks.append(other)
    other.tag = main.tag
    other.up()
    host = inspect(other, "app")["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["CpuShares"], host["PidsLimit"]) == (
        300 * 1024 * 1024, 500_000_000, 256, 150)
    other.down()


def test_the_restricted_app_serves_pages_static_files_and_an_admin_login(up):
    password = "hardened-" + up.password
    create_superuser(up, "hardadmin", password)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(up.url("/admin/login/"), timeout=10).read().decode()
    css = re.search(r'href="(/static/[^"]+\.css)"', page).group(1)
    with opener.open(up.url(css), timeout=10) as resp:
        assert resp.status == 200 and resp.read()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "hardadmin", "password": password,
                                   "next": "/admin/"}).encode()
    with opener.open(urllib.request.Request(up.url("/admin/login/?next=/admin/"), data=data,
                                            headers={"Referer": up.url("/admin/login/")}), timeout=10) as resp:
        assert resp.status == 200 and resp.url == up.url("/admin/")
        assert "Log out" in resp.read().decode()
