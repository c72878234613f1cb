"""A person's view: headless Chromium (Debian ``chromium`` + ``chromium-driver``) drives the
real dashboard process: live data, an update arriving without reload, pausing from the UI,
the issue and activity pages over a real audit log, keyboard use and text contrast.

Screenshots go to ``$SYMPHONY_ARTIFACTS`` when set, else ``test-artifacts/`` at the top of
the repository (ignored by git), named ``dashboard-<page>.png``."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from symphonyd.core.api.dispatcher import DaemonHealthRow, StateSnapshot
from tests.dashboard.conftest import Running, WithAudit
from tests.dashboard.contrast import low_contrast
from tests.dashboard.double import running_row, snapshot
from tests.dashboard.harness import REPO
from tests.dashboard.test_overview_page import LIMITS

ARTIFACTS = Path(os.environ.get("SYMPHONY_ARTIFACTS") or REPO / "test-artifacts")
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


def _shot(driver: webdriver.Chrome, name: str) -> Path:
    """A full-page screenshot: the window grows to the document's height first."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight;"))
    driver.set_window_size(1400, min(max(height + 200, 1000), 6000))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"dashboard-{name}.png"
    assert driver.save_screenshot(str(shot))
    driver.set_window_size(1400, 1000)
    return shot


def _severe(driver: webdriver.Chrome) -> list[object]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


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
    daemons = [*snap.daemons, DaemonHealthRow("workflow", False, None, None)]  # unchecked
    return dataclasses.replace(snap, running=rows, rate_limits=LIMITS, daemons=daemons)


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

    assert _shot(browser, "overview").stat().st_size > 10_000


def test_issue_page_renders_the_timeline(running: Running, browser: webdriver.Chrome) -> None:
    browser.get(running.base + "/issues/MT-1")
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "TIMELINE" in text.upper() and "turn_completed" in text and "/var/lib/symphony" in text
    _shot(browser, "issue-live")


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
    _shot(browser, "audit")


def test_issue_page_shows_runs_transcript_and_sandbox_records(
    with_history: WithAudit, browser: webdriver.Chrome
) -> None:
    browser.get(with_history.dashboard.base + "/issues/MT-1")
    main = browser.find_element(By.TAG_NAME, "main").text
    # The title and the tracker link from the dispatcher, the workspace path.
    assert "Parser drops the last line of CRLF files" in main
    link = browser.find_element(By.LINK_TEXT, "open in tracker")
    assert link.get_attribute("href") == "https://tracker.invalid/issues/MT-1"
    assert "/var/lib/symphony/workspaces/MT-1" in main
    # Two runs, newest first, each with its outcome, reason and transcript.
    runs = browser.find_elements(By.CSS_SELECTOR, "section.run")
    heads = [r.find_element(By.TAG_NAME, "h3").text for r in runs]
    assert heads[0].startswith("Run 2 succeeded") and "run-1b" in heads[0]
    assert heads[1].startswith("Run 1 failed — turn_failed") and "run-1a" in heads[1]
    first = runs[1].text
    for line in (
        "sandbox ready",
        "prompt (turn 1)",
        "tool call",
        "linear_graphql — ok",
        "file change",
        "modified src/parser.py",
        "egress allowed",
        "api.openai.com:443",
        "egress denied",
        "pastebin.example:443 (not_allowed)",
        "sandbox removed",
        "Duration",
    ):
        assert line in first, line
    kinds = [c.text for c in runs[1].find_elements(By.CSS_SELECTOR, "tbody td:nth-child(2)")]
    assert kinds == [
        "sandbox ready", "prompt (turn 1)", "egress allowed", "agent message", "command",
        "transcript capped", "tool call", "file change", "egress denied", "sandbox removed",
    ]  # fmt: skip
    # The agent's words and commands, escaped; no journal outside systemd, said neutrally.
    assert "I will fix the parser <script>alert('arg')</script>…" in first
    assert "/bin/bash -lc 'pytest -q tests' (exit 1)" in first
    assert "kept 200; not recorded: 7 command" in first
    assert "cannot read a journal here" in main
    assert "MT-2" not in main and "stall_timeout" not in main  # another issue's run
    # An absolute start time, and a duration of about the second the run took.
    started = runs[1].find_element(By.CSS_SELECTOR, "dl time").text
    assert len(started) == 19 and started[4] == "-" and started[13] == ":"
    assert "<script>alert('arg')</script>" in first  # a tool argument, shown as text
    assert runs[0].text.count("egress denied") == 1  # a tagged record is not shown twice
    assert _severe(browser) == []
    _shot(browser, "issue")
    # The audit page's issue filter finds the sandbox records that carry the issue.
    browser.get(with_history.dashboard.base + "/audit?issue=MT-1&type=egress_deny")
    listing = browser.find_element(By.TAG_NAME, "main").text
    assert listing.count("pastebin.example") == 1 and "run-1b" in listing


def test_activity_page_draws_accessible_charts(
    with_history: WithAudit, browser: webdriver.Chrome
) -> None:
    browser.get(with_history.dashboard.base + "/activity")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg[role=img]")
    assert len(charts) == 3
    for svg in charts:
        title_id, desc_id = svg.get_attribute("aria-labelledby").split()
        assert browser.find_element(By.ID, title_id).get_attribute("textContent")
        assert "in all" in browser.find_element(By.ID, desc_id).get_attribute("textContent")
        assert svg.size["height"] > 100 and svg.size["width"] > 300
    runs = browser.find_element(By.ID, "runs-chart")
    bars = [
        int(b.get_attribute("height").split(".")[0])
        for b in runs.find_elements(By.TAG_NAME, "rect")
    ]
    assert len(bars) == 24 and sum(1 for b in bars if b > 0) in (1, 2)  # all within a minute
    desc = browser.find_element(By.ID, "runs-chart-desc").get_attribute("textContent")
    assert desc.startswith("4 runs in all")
    tokens = browser.find_element(By.ID, "tokens-chart-desc").get_attribute("textContent")
    assert tokens.startswith("26,400 tokens in all")
    # Failures by reason, largest first, with the numbers as a table too.
    failures = browser.find_element(By.ID, "failures-chart")
    failures.find_element(By.TAG_NAME, "summary").click()
    rows = [r.text for r in failures.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert sorted(rows) == ["stall_timeout 1", "turn_failed 1", "turn_timeout 1"]
    # The latest runs, with titles where the dispatcher gave them.
    latest = browser.find_element(By.XPATH, "//h2[text()='Latest runs']/following::table[1]")
    lines = latest.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [line.text.split()[0] for line in lines] == ["MT-3", "MT-2", "MT-1", "MT-1"]
    assert "timed_out" in lines[0].text and "turn_timeout" in lines[0].text
    assert "Parser drops the last line of CRLF files" in lines[2].text
    assert _severe(browser) == []
    _shot(browser, "activity")


def test_keyboard_skip_link_focus_ring_and_reachable_links(
    with_history: WithAudit, browser: webdriver.Chrome
) -> None:
    browser.get(with_history.dashboard.base + "/issues/MT-1")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.text == "Skip to content" and focused.location["y"] >= 0
    outline = browser.execute_script(
        "const s = getComputedStyle(document.activeElement);"
        "return [s.outlineStyle, parseFloat(s.outlineWidth)];"
    )
    assert outline[0] != "none" and outline[1] >= 2, outline  # a visible focus ring
    _shot(browser, "focus-skip-link")
    focused.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    # Tabbing onwards reaches every link on the page, in document order.
    links = browser.execute_script(
        "return [...document.querySelectorAll('main a[href]')].map(a => a.href);"
    )
    seen = []
    for _ in range(len(links) + 10):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        element = browser.switch_to.active_element
        if element.tag_name == "a" and element.get_attribute("href") in links:
            seen.append(element.get_attribute("href"))
        if element.tag_name in ("a", "button", "input", "select", "summary"):
            ring = browser.execute_script(
                "return getComputedStyle(document.activeElement).outlineStyle;"
            )
            assert ring != "none", element.get_attribute("outerHTML")  # each stop shows it
    assert seen[: len(links)] == links and links


def test_text_contrast_meets_wcag_aa_on_every_page(
    with_history: WithAudit, browser: webdriver.Chrome
) -> None:
    base = with_history.dashboard.base
    for path in ("/", "/issues/MT-1", "/activity", "/audit"):
        browser.get(base + path)
        problems = low_contrast(browser)
        assert problems == [], (path, problems)
