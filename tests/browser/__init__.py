"""Real-browser test harness: Debian's headless Chromium driven by Selenium through Debian's chromedriver.

``chromium`` (a pytest fixture; import it into a test module to use it) makes browsers::

    def test_x(chromium):
        b = chromium(host="app.example.test", ca_pem=LAB_ROOT)   # NAME -> 127.0.0.1, trusting that CA root
        admin_login(b.driver, "http://localhost:8000", "admin", "pw")

Each browser has a fresh $HOME (with its own NSS database, where the CA root is imported with certutil: real
trust, not an ignore-errors switch) and a fresh --user-data-dir. Browsers treat localhost and 127.0.0.1 as
secure contexts, so HTTPS/cookie tests use a real host name mapped to 127.0.0.1 with --host-resolver-rules.
When the test fails, each browser's screenshot and page source go to test-artifacts/<test name>/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("DJDEPLOY_TEST_ARTIFACTS") or ROOT / "test-artifacts")
CHROMIUM, CHROMEDRIVER, CERTUTIL = "/usr/bin/chromium", "/usr/bin/chromedriver", "certutil"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1280,900")
WAIT = 20


def chromium_flags(user_data_dir: str, hosts: tuple = ()) -> list[str]:
    """Pure: Chromium's command-line flags for a fresh profile; every name in ``hosts`` resolves to 127.0.0.1."""
    flags = [*FLAGS, f"--user-data-dir={user_data_dir}"]
    if hosts:
        flags.append("--host-resolver-rules=" + ", ".join(f"MAP {h} 127.0.0.1" for h in hosts))
    return flags


def nssdb_argvs(nssdb: str, ca_file: str, nickname: str = "djdeploy-lab-ca") -> list[list[str]]:
    """Pure: create an empty NSS database and import ``ca_file`` as a CA trusted for TLS servers."""
    return [[CERTUTIL, "-N", "-d", f"sql:{nssdb}", "--empty-password"],
            [CERTUTIL, "-A", "-d", f"sql:{nssdb}", "-n", nickname, "-t", "C,,", "-i", ca_file]]


def missing_tools() -> list[str]:
    return [t for t in (CHROMIUM, CHROMEDRIVER, CERTUTIL) if not shutil.which(t)]


class Browser:
    """One headless Chromium (its own HOME, NSS db and profile) under Selenium."""

    def __init__(self, hosts: tuple = (), ca_pem: str | None = None):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.home = tempfile.mkdtemp(prefix="djdeploy-browser-")
        if ca_pem:
            nssdb = Path(self.home, ".pki", "nssdb")
            nssdb.mkdir(parents=True)
            ca_file = Path(self.home, "ca.pem")
            ca_file.write_text(ca_pem)
            for argv in nssdb_argvs(str(nssdb), str(ca_file)):
                subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in chromium_flags(str(Path(self.home, "profile")), hosts):
            options.add_argument(flag)
        env = {**os.environ, "HOME": self.home, "SE_OFFLINE": "true"}
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=options)
        self.driver.set_page_load_timeout(WAIT)

    def save(self, directory: Path, name: str) -> list[Path]:
        """Screenshot (PNG) and page source (HTML) of the current page into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        png, html = directory / f"{name}.png", directory / f"{name}.html"
        self.driver.save_screenshot(str(png))
        html.write_text(f"<!-- {self.driver.current_url} -->\n{self.driver.page_source}")
        return [png, html]

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def chromium(request):
    """A factory of browsers: chromium(host=NAME or hosts=(...), ca_pem=PEM). Artifacts on failure; all quit."""
    missing = missing_tools()
    if missing:
        why = f"needs {', '.join(missing)} (installed by `inv lab.up` as root on Debian)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and this test {why}", pytrace=False)
        pytest.skip(why)
    made: list[Browser] = []

    def make(host: str | None = None, hosts: tuple = (), ca_pem: str | None = None) -> Browser:
        browser = Browser(tuple(hosts) + ((host,) if host else ()), ca_pem)
        made.append(browser)
        return browser

    yield make
    rep = getattr(request.node, "rep_call", None)
    failed = rep is not None and rep.failed
    for i, browser in enumerate(made):
        try:
            if failed:
                where = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
                saved = browser.save(where, f"browser{i}")
                print(f"saved {', '.join(map(str, saved))}")
        finally:
            browser.quit()


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # a page that is replaced while the condition reads it makes its elements stale: read it again
        return WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out after {WAIT}s waiting for {what} at {driver.current_url}: "
                             f"{driver.find_element('tag name', 'body').text[:500]!r}") from None


def admin_login(driver, base_url: str, username: str, password: str) -> None:
    """Log into the Django admin through its login form; fail with the page's text if it does not land."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/admin/login/?next=/admin/")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    _wait(driver, lambda d: d.find_elements(By.ID, "logout-form") or "Forbidden" in d.title
          or d.find_elements(By.CSS_SELECTOR, ".errornote"), "the admin after login")
    body = driver.find_element(By.TAG_NAME, "body").text
    assert driver.find_elements(By.ID, "logout-form"), f"admin login failed at {driver.current_url}: {body[:500]!r}"


def add_note(driver, base_url: str, text: str) -> None:
    """Create a note through the notes page's form and wait until the list shows it."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/")
    field = driver.find_element(By.ID, "id_text")
    field.send_keys(text)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait(driver, lambda d: text in note_items(d) or "Forbidden" in d.title, f"note {text!r} in the list")
    items = note_items(driver)
    assert text in items, f"note not shown at {driver.current_url}: {page_text(driver)[:500]!r}"


def note_items(driver) -> list[str]:
    """The notes list's texts, read in one script call (never a stale element while the page is replaced)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#notes li'), li => li.innerText.trim())")


def page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wagtail_login(driver, base_url: str, username: str, password: str) -> None:
    """Sign into the Wagtail admin through its login form; fail with the page's text if it does not land."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/admin/login/?next=/admin/")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form.login-form button[type=submit]").click()
    _wait(driver, lambda d: not d.find_elements(By.ID, "id_password") or d.find_elements(By.CSS_SELECTOR, ".error"),
          "the Wagtail admin after signing in")
    assert not driver.find_elements(By.ID, "id_password"), \
        f"Wagtail admin sign-in failed at {driver.current_url}: {page_text(driver)[:500]!r}"


def wagtail_upload_image(driver, base: str, path, title: str) -> int:
    """Add an image through /admin/images/add/; return its id (from the success message's Edit link)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/admin/images/add/")
    driver.find_element(By.ID, "id_file").send_keys(str(path))
    field = driver.find_element(By.ID, "id_title")
    field.clear()
    field.send_keys(title)
    driver.find_element(By.CSS_SELECTOR, "form[enctype='multipart/form-data'] button[type=submit]").click()
    link = re.compile(r"/admin/images/(\d+)/$")

    def edit_link(d):
        hrefs = d.execute_script("return Array.from(document.querySelectorAll('.messages a'), a => a.href)")
        return next((int(m.group(1)) for h in hrefs if (m := link.search(h))), None)
    try:
        return WebDriverWait(driver, 60).until(edit_link)
    except Exception:
        raise AssertionError(f"no 'Image added' message at {driver.current_url}: {page_text(driver)[:800]!r}") from None


def wagtail_rendition_path(driver, base: str, image_id: int, width: int, height: int) -> str:
    """The URL Wagtail's admin URL generator gives for a fill-WxH rendition (its path: the site root is Wagtail's)."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/admin/images/{image_id}/generate_url/?filter_method=fill&width={width}&height={height}")
    url = driver.find_element(By.ID, "result-url").get_attribute("value")
    path = "/" + url.split("://", 1)[-1].split("/", 1)[1]
    assert path.startswith("/images/") and f"/{image_id}/fill-{width}x{height}/" in path, url
    return path


def retry_network_change(driver, action, attempts: int = 3):
    """Run ``action()``, again when Chromium aborted a load on ERR_NETWORK_CHANGED (other tests add and remove
    bridges on this host); any other failure is raised at once."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception:
            if attempt == attempts - 1 or "ERR_NETWORK_CHANGED" not in driver.page_source:
                raise
