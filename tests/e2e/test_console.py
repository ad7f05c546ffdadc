"""The web console in a real browser: Debian's chromium, headless, driven by
selenium through chromedriver (scripts/ensure-browser installs both), against
`runtime-host serve` on the real Docker engine.

One browser session: open the console, go to a function, save a test event,
invoke it from the editor, see the response and its REPORT, see the sandbox
appear and then freeze, see the chart count the invocation; the page is
then saved as a PNG: into the test's temporary folder, and as
docs/console.png (the README shows it) when UPDATE_SCREENSHOT=1, so that a
run of the suite leaves the checkout as it was. Every wait is for a
condition, with a generous bound: a timeout means the thing never happened.
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import REPO, start_host, stop_host

WAIT_S = 120                     # an upper bound, never a speed target: a cold start may build nothing, or a lot
SCREENSHOT = REPO / "docs" / "console.png"   # written when UPDATE_SCREENSHOT=1
FUNCTION = "py-echo-log"         # prints the event it gets and answers it
# A payload that would run script if the console ever put it into the page as markup.
PAYLOAD = '{"greeting": "<img src=x onerror=alert(1)>", "n": 1}'


def browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromedriver are not installed; run scripts/ensure-browser (make browser)")
    return chromium, driver


@pytest.fixture
def console_host(docker_engine, tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    for folder in (REPO / "tests" / "functions" / FUNCTION, REPO / "examples" / "hello-python"):
        (functions / folder.name).symlink_to(folder)
    # A freeze grace long enough that a page can see the sandbox before it freezes.
    running = start_host(functions, tmp_path / "state", extra_args=["--freeze-grace-ms", "1500"])
    yield running
    stop_host(running)
    assert running.proc.returncode == 0, running.stderr()


@pytest.fixture
def browser():
    chromium, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1500",
                "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--disable-domain-reliability", "--hide-scrollbars"):
        options.add_argument(arg)
    # The driver is given: selenium's own driver manager (which would go to the network) is never used.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def save_small_png(png: bytes, path: Path) -> None:
    """The screenshot with its colours reduced to a palette: a third of the
    bytes, no visible change for a page of text and flat colours."""
    from PIL import Image          # pillow: matplotlib's dependency, in the test extra

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, "PNG", optimize=True)


def no_alert(driver) -> bool:
    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_invoke_from_the_console_and_watch_the_sandbox_freeze_and_the_chart_count(console_host, browser, tmp_path):
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(f"{console_host.endpoint}/console")
    browser.find_element(By.LINK_TEXT, FUNCTION).click()
    wait.until(lambda d: text_of(d, "#function-name") == FUNCTION)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#charts .charts").get_attribute("data-invocations") == "0")

    # Save the test event under a name, as Lambda's console does.
    body = browser.find_element(By.ID, "event-body")
    body.clear()
    body.send_keys(PAYLOAD)
    browser.find_element(By.ID, "event-name").send_keys("xss-probe")
    browser.find_element(By.ID, "save").click()
    wait.until(lambda d: "xss-probe" in [o.text for o in Select(d.find_element(By.ID, "saved-events")).options])
    assert (console_host.state_dir / "console" / "events" / FUNCTION / "xss-probe.json").read_text() == PAYLOAD

    # Invoke: the response, the log tail and its REPORT.
    browser.find_element(By.ID, "invoke").click()
    wait.until(lambda d: text_of(d, "#report").startswith("REPORT RequestId: "))
    assert text_of(browser, "#result-status") == "succeeded"
    assert "<img src=x onerror=alert(1)>" in text_of(browser, "#response")      # shown as text ...
    assert browser.find_elements(By.CSS_SELECTOR, "#response img") == []        # ... never as markup
    assert no_alert(browser)
    assert "echo-log got" in text_of(browser, "#log-tail")
    assert "Billed Duration:" in text_of(browser, "#report")

    # The sandbox appears in the live table, and freezes once its grace has passed.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sandboxes tr[data-state]"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#sandboxes tr[data-state="FROZEN"]'))

    # The chart counts the invocation (the ledger read again while the page listens).
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#charts .charts").get_attribute("data-invocations") == "1")
    assert browser.find_elements(By.CSS_SELECTOR, '#charts svg[data-chart="invocations"] rect.inv')

    # Live logs: the function's line, from its log stream, as text.
    wait.until(lambda d: "echo-log got" in text_of(d, "#logs"))
    assert browser.find_elements(By.CSS_SELECTOR, "#logs img") == []

    browser.execute_script("window.scrollTo(0, 0)")
    shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / "console.png"
    save_small_png(browser.get_screenshot_as_png(), shot)
    assert shot.stat().st_size > 10_000          # a page, not a blank

    # The first page: every function, and the billing table with this invocation.
    browser.find_element(By.LINK_TEXT, "\u2190 Functions").click()
    wait.until(lambda d: d.find_elements(By.LINK_TEXT, "hello-python"))
    billing = [row.text.split()[:2] for row in browser.find_elements(By.CSS_SELECTOR, "table.grid tbody tr")]
    assert [FUNCTION, "1"] in billing and ["TOTAL", "1"] in billing
    assert no_alert(browser)
    # Nothing refused by the pages' Content-Security-Policy, no script error, no missing file.
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
