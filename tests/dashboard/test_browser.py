"""A person's view: headless Chromium (Debian ``chromium`` + ``chromium-driver``) drives the
overview: live data, an update arriving without reload, pausing from the UI, a screenshot."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from symphonyd.core.messages import StateSnapshot
from tests.dashboard.conftest import Running, WithAudit
from tests.dashboard.double import running_row, snapshot
from tests.dashboard.harness import REPO

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    profile = Path(tempfile.mkdtemp(prefix="sydash-chromium"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _text(driver: webdriver.Chrome, element_id: str) -> str:
    """Rendered text of an element, read in one script call: ``#live`` is re-rendered by every
    Server-Sent Event, so a find_element handle can go stale between lookup and read."""
    text = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : '';",
        element_id,
    )
    return str(text)


def _busy_snapshot() -> StateSnapshot:
    snap = snapshot(running=6)
    rows = [
        dataclasses.replace(row, last_message=msg)
        for row, msg in zip(
            snap.running,
            [
                "Running the test suite",
                "Editing src/parser.py",
                "Waiting for model response",
                "Opened a pull request",
                "Reading CONTRIBUTING.md",
                '<script>alert("title")</script> renders as text',
            ],
            strict=True,
        )
    ]
    return dataclasses.replace(snap, running=rows)


def test_overview_is_live_pauses_from_the_ui_and_looks_right(
    running: Running, browser: webdriver.Chrome
) -> None:
    running.dispatcher.update(lambda _: _busy_snapshot())
    wait = WebDriverWait(browser, 30)
    browser.get(running.base + "/")
    wait.until(lambda d: _text(d, "live-status") == "live")
    assert "MT-6" in _text(browser, "live")
    browser.execute_script("window.__sameDocument = true;")

    def new_run(snap: StateSnapshot) -> StateSnapshot:
        row = running_row(42, message="arrived over Server-Sent Events")
        return dataclasses.replace(snap, running=[*snap.running, row])

    running.dispatcher.update(new_run)
    wait.until(lambda d: "arrived over Server-Sent Events" in _text(d, "live"))
    assert browser.execute_script("return window.__sameDocument === true;")  # no reload

    reason = browser.find_element(By.CSS_SELECTOR, '#pause-form input[name="reason"]')
    reason.send_keys("deploy window")
    browser.find_element(By.CSS_SELECTOR, 'button[data-action="pause"]').click()
    wait.until(lambda d: "Paused" in _text(d, "pause-state"))
    banner = _text(browser, "pause-state")
    assert "deploy window" in banner and "uid" in banner
    assert [c[:2] for c in running.dispatcher.calls] == [("pause", "deploy window")]
    assert browser.execute_script("return window.__sameDocument === true;")

    # The hostile message is text on the page, never a script that ran.
    assert '<script>alert("title")</script>' in _text(browser, "live")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # e.g. a CSP violation would show here

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-overview.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_issue_page_renders_the_timeline(running: Running, browser: webdriver.Chrome) -> None:
    browser.get(running.base + "/issues/MT-1")
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "TIMELINE" in text.upper() and "turn_completed" in text and "/var/lib/symphony" in text
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard-issue.png"))


def test_audit_page_verifies_the_chain_from_the_ui(
    with_audit: WithAudit, browser: webdriver.Chrome
) -> None:
    base = with_audit.dashboard.base
    browser.get(base + "/audit?type=egress_deny")
    assert "denied.test" in browser.find_element(By.TAG_NAME, "main").text
    browser.find_element(By.CSS_SELECTOR, 'button[data-action="verify"]').click()
    result = browser.find_element(By.ID, "action-result")
    WebDriverWait(browser, 60).until(lambda _: "chain ok" in result.text)
    assert result.text == "chain ok: 6 records"
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard-audit.png"))
