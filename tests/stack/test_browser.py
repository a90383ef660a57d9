"""Issue 9 proof (a): a real browser (headless Chromium + Selenium) logs into the admin of `inv up` at
http://localhost:PORT and creates a note through the notes page's form. And the control that shows the harness
can fail: plain HTTP by a real host name (mapped to 127.0.0.1) against Secure cookies gets Django's CSRF 403."""

from __future__ import annotations

import secrets

import pytest

from browser import add_note, admin_login, chromium, page_text  # noqa: F401 (chromium is a fixture)
from stackhelpers import create_superuser

pytestmark = pytest.mark.engine
HOST = "app.djdeploy.test"


def test_admin_login_and_a_note_through_the_form_on_localhost(up, chromium):
    password = secrets.token_urlsafe(16)
    create_superuser(up, "browseradmin", password)
    base = f"http://localhost:{up.port}"
    driver = chromium().driver
    admin_login(driver, base, "browseradmin", password)
    note = f"browser note {secrets.token_hex(4)}"
    add_note(driver, base, note)
    driver.get(f"{base}/")  # a fresh GET still lists it (it was stored, not only echoed)
    assert note in page_text(driver)


def test_secure_cookies_over_plain_http_by_host_name_get_the_csrf_403(up, stack_session, request, chromium):
    """The motivating bug of issue 9, reproduced: the browser drops Secure cookies on http://NAME, so the login
    POST arrives without the CSRF cookie and Django answers 403."""
    secure = stack_session("sec", DJANGO_SECURE_COOKIES="on", DJANGO_DEBUG="off",
                           DJANGO_ALLOWED_HOSTS=f"{HOST},localhost,127.0.0.1")
    request.node.stacks.append(secure)
    secure.tag = up.tag
    secure.up()
    password = secrets.token_urlsafe(16)
    create_superuser(secure, "browseradmin", password)
    driver = chromium(host=HOST).driver
    with pytest.raises(AssertionError, match="admin login failed"):
        admin_login(driver, f"http://{HOST}:{secure.port}", "browseradmin", password)
    assert "403" in driver.title or "403" in page_text(driver), page_text(driver)
    assert "CSRF verification failed" in driver.page_source, page_text(driver)
    secure.down()
