"""What is (and is not) inside the image: size, user, no build tools, no secrets, no CA bundle, PCRE routing."""

import io
import os
import re
import tarfile

import pytest

pytestmark = pytest.mark.engine


def sh(docker_client, image, script, **kw):
    return docker_client.containers.run(image, ["sh", "-c", script], entrypoint=[], remove=True,
                                        labels={"djdeploy.test": "image"}, **kw).decode()


def test_size_at_most_150_mb(built_image):
    assert built_image.size <= 150_000_000, f"{built_image.size / 1e6:.1f} MB"


def test_fixed_numeric_non_root_user(docker_client, built_image):
    img = docker_client.images.get(built_image.ref)
    assert img.attrs["Config"]["User"] == "10001:10001"
    assert sh(docker_client, built_image.ref, "id -u; id -g").split() == ["10001", "10001"]


def test_no_build_tools_pip_apt_lists_or_setuid(docker_client, built_image):
    out = sh(docker_client, built_image.ref,
             "for t in gcc cc make pip pip3 curl wget; do command -v $t; done;"
             "ls /var/lib/apt/lists | grep -v -x -e lock -e partial; ls -d /root/.cache/pip /tmp/build 2>/dev/null;"
             "find / -xdev -perm /6000 -type f 2>/dev/null; python -c 'import pip' 2>/dev/null && echo has-pip; true",
             user="0")
    assert out.strip() == ""


def test_contract_layout(docker_client, built_image):
    cfg = docker_client.images.get(built_image.ref).attrs["Config"]
    assert cfg["Entrypoint"] == ["docker-entrypoint.sh"] and cfg["Cmd"] == ["uwsgi"]
    assert cfg["WorkingDir"] == "/app" and "8000/tcp" in cfg["ExposedPorts"]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "python", "-m", "djdeploy_django.healthcheck"]
    assert f"APP_VERSION={built_image.ref.split(':', 1)[1]}" in cfg["Env"]
    out = sh(docker_client, built_image.ref, "ls /app; command -v python; command -v uwsgi; tail -n1 /usr/local/bin/docker-entrypoint.sh")
    assert "manage.py" in out and "/opt/venv/bin/python" in out and "/opt/venv/bin/uwsgi" in out
    assert out.strip().endswith('exec "$@"')


def test_build_context_leftovers_absent(docker_client, built_image):
    out = sh(docker_client, built_image.ref, "find / -xdev \\( -name .env -o -name .git -o -name tests -path '/app/*' "
             "-o -name build-ca.pem -o -name '*.po' -o -name requirements-dev.txt -o -path /app/tasks.py \\) -print", user="0")
    assert out.strip() == ""


def _host_bundle_certs():
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(name)
        if path and os.path.isfile(path):
            text = open(path).read()
            return set(re.findall(r"-----BEGIN CERTIFICATE-----\n(.+?)\n", text))  # first base64 line of each
    return set()


def test_no_ca_bundle_and_no_secret_in_final_image(docker_client, built_image):
    """The builder stage saw the host's CA bundle (TLS-intercepting proxy); the final image holds none of it:
    not in any file, layer command, ENV, ARG or label."""
    img = docker_client.images.get(built_image.ref)
    history = " ".join(h.get("CreatedBy", "") for h in img.history())
    config = repr(img.attrs["Config"]) + repr(img.attrs.get("ContainerConfig"))
    for needle in ("build-ca", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "BEGIN CERTIFICATE"):
        assert needle not in history and needle not in config
    assert "DJANGO_SECRET_KEY=" not in config and "DATABASE_URL" not in config
    # the collectstatic key is generated inside the RUN step: only the generator is in history, no value
    assert re.search(r"DJANGO_SECRET_KEY=\"\$\(python3 -c", history)
    # scan every file of the final image's filesystem for any certificate of the host bundle
    certs = _host_bundle_certs()
    if not certs:
        pytest.skip("no CA bundle configured on this host (PIP_CERT/SSL_CERT_FILE/REQUESTS_CA_BUNDLE)")
    container = docker_client.containers.create(built_image.ref, labels={"djdeploy.test": "image"})
    try:
        stream = io.BytesIO(b"".join(container.export()))
    finally:
        container.remove(force=True)
    found = []
    with tarfile.open(fileobj=stream) as tar:
        for member in tar:
            if member.isfile() and member.size < 20_000_000:
                data = tar.extractfile(member).read()
                if b"BEGIN CERTIFICATE" in data and any(c.encode() in data for c in certs):
                    found.append(member.name)
    assert found == []


def test_uwsgi_has_pcre_routing(docker_client, built_image):
    """A uWSGI without PCRE silently ignores routes; ours must register the Host rule."""
    out = sh(docker_client, built_image.ref, "uwsgi --route-if 'regexp:${HTTP_HOST};^x$ break:400' --http :9 "
             "--wsgi-file /dev/null --need-app 2>&1 | grep -i -e routing -e 'func:' -e unrecognized; true")
    assert "no internal routing support" not in out and "unrecognized option" not in out
    assert "dumping internal routing table" in out and "func: regexp" in out


def test_check_deploy_in_the_image(docker_client, built_image):
    env = {"DJANGO_SECRET_KEY": "s" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz", "DJANGO_ALLOWED_HOSTS": "localhost",
           "DATABASE_URL": ""}
    out = docker_client.containers.run(built_image.ref, ["python", "manage.py", "check", "--deploy",
                                                         "--fail-level", "WARNING"], environment=env, remove=True,
                                       labels={"djdeploy.test": "image"})
    assert b"no issues" in out
    from docker.errors import ContainerError

    with pytest.raises(ContainerError) as info:
        docker_client.containers.run(built_image.ref, ["python", "manage.py", "check", "--deploy", "--fail-level",
                                                       "WARNING"], environment={**env, "DJANGO_DEBUG": "on"},
                                     remove=True, labels={"djdeploy.test": "image"})
    assert b"security.W018" in info.value.stderr
