"""The whole suite, installed from the .deb, under a real systemd (PID 1) in a container.

A local-files issue is picked up, a real Codex agent edits its workspace and hands the issue
off through the tracker tool; a hostile issue beside it arrives fenced and capped, with no
secret in its audit preview or its agent's environment (tests/e2e/hostile_issue.py); pause
survives a dispatcher restart; an issue held before dispatch stays out until released; the
journal carries issue fields; the audit chain verifies; every daemon comes back after
kill -9; a launcher killed mid-run costs the issue one retry; the running suite switched to
a GitLab instance on the same host (a fake GitLab in the container) takes an issue filed there
through to the hand-off, and the packaged webhook receiver, once enabled, refuses an
unauthenticated GitLab delivery and turns an authenticated one into a refresh; after all that,
``apt purge`` leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devtools.demo_setup import CODEX_VENDOR, configure_demo, install_package
from devtools.nspawn import Container
from tests.e2e import gitlab_tracker, hostile_issue, webhook_receiver
from tests.e2e.test_package import SOCKETS, purge_leftovers

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.agents]

DAEMONS = ("audit", "tracker", "launcher", "dispatcher")  # dashboard: socket-activated
STATE_URL = "http://127.0.0.1:4000/api/v1/state"
FETCH = (
    "import json,sys,urllib.request as u; print(u.urlopen(sys.argv[1], timeout=20).read().decode())"
)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def unit_state(c: Container, unit: str) -> str:
    return c.run(["systemctl", "show", "-P", "SubState", unit], check=False).stdout.strip()


def main_pid(c: Container, unit: str) -> str:
    return c.run(["systemctl", "show", "-P", "MainPID", unit]).stdout.strip()


def issue_state(c: Container, identifier: str) -> str:
    issues = json.loads(c.run(["symphonyctl", "issue", "list", "--json"]).stdout)
    return str(next(i["state"] for i in issues if i["identifier"] == identifier))


def handed_off(c: Container, identifier: str) -> Callable[[], bool]:
    return lambda: issue_state(c, identifier) == "Human Review"


def journal_dump(c: Container) -> str:
    return c.run(["journalctl", "--no-pager", "-n", "200", "-u", "symphony*"], check=False).stdout


def start_suite(c: Container, deb: Path, arm: Callable[[Container], None] | None = None) -> None:
    install_package(c, deb)
    if arm is not None:
        arm(c)  # set up before any daemon starts
    # The very setup the quick start uses (devtools/demo_setup.py).
    configure_demo(c, CODEX_VENDOR / "bin")
    try:
        wait_until(
            "every daemon running",
            lambda: all(unit_state(c, f"symphony-{d}.service") == "running" for d in DAEMONS),
            timeout=90,
        )
    except AssertionError:
        raise AssertionError(journal_dump(c)) from None


def test_suite_runs_an_issue_end_to_end(container: Container, deb_file: Path) -> None:
    c = container
    start_suite(c, deb_file, hostile_issue.arm)
    for name, owner in SOCKETS.items():
        stat = c.run(["stat", "-c", "%a %U", f"/run/symphony/{name}"]).stdout.split()
        assert stat == ["600", owner], (name, stat)
    # doctor sees what the launcher's probe sees: limits hold, or (this CI host's container)
    # they do not and the demo config explicitly allows it.
    probe = c.run(["python3", "-m", "symphonyd.launcher.sandbox.unit_limits"], check=False)
    checks = json.loads(c.run(["symphonyctl", "doctor", "--json"], check=False).stdout)
    (limits,) = [x for x in checks if x["name"] == "resource-limits"]
    assert limits["status"] == ("ok" if probe.returncode == 0 else "warn"), (limits, probe.stdout)

    c.run(
        [
            "symphonyctl",
            "issue",
            "new",
            "DEMO-1",
            "--title",
            "Say hello <b>$(id)</b>",
            "--description",
            "Write a greeting file.",
        ]
    )
    hostile_issue.file_issues(c)  # worked on beside DEMO-1 (tests/e2e/hostile_issue.py)
    try:
        for identifier in ("DEMO-1", hostile_issue.IDENTIFIER):
            wait_until(
                f"the agent to hand {identifier} off",
                handed_off(c, identifier),
                timeout=180,
            )
    except AssertionError:
        raise AssertionError(journal_dump(c)) from None
    hostile_issue.check(c)
    demo = c.run(["cat", "/var/lib/symphony/workspaces/DEMO-1/symphony-demo.md"]).stdout
    assert "demo model" in demo
    # after_create ran in a transient unit of its own as the agent user, and the hostile
    # title reached it verbatim: neither PID 1 nor a shell expanded its "$(id)".
    ws = "/var/lib/symphony/workspaces/DEMO-1"
    assert c.run(["cat", f"{ws}/ISSUE.md"]).stdout == "# DEMO-1\n\nSay hello <b>$(id)</b>\n"
    owners = c.run(["stat", "-c", "%U", f"{ws}/ISSUE.md", f"{ws}/.git/config"]).stdout.split()
    assert owners == ["symphony-agent", "symphony-agent"], owners
    systemd_log = c.run(["journalctl", "--no-pager", "-o", "cat", "_PID=1"]).stdout
    # PID 1 names the units by their descriptions, not their command lines (issue 22).
    for described in ("symphony hook after_create for DEMO-1", "symphony agent for DEMO-1"):
        assert described in systemd_log, systemd_log[-3000:]

    # The run is in the journal with its issue fields (symphonyctl logs matches on them).
    journal = c.run(["journalctl", "--no-pager", "-o", "json", "ISSUE_IDENTIFIER=DEMO-1"]).stdout
    entries = [json.loads(line) for line in journal.splitlines()]
    finished = [e for e in entries if "outcome=succeeded" in str(e.get("MESSAGE"))]
    assert finished and finished[0].get("ISSUE_ID") == "DEMO-1", entries[-5:]
    assert finished[0].get("_SYSTEMD_UNIT") == "symphony-launcher.service"
    # So are the dispatcher's decisions about it (SPEC 13.1): the dispatch, and the
    # continuation retry after the run, which names the agent's session.
    decisions = [e for e in entries if e.get("_SYSTEMD_UNIT") == "symphony-dispatcher.service"]
    events = [e.get("SYMPHONY_EVENT") for e in decisions]
    assert "dispatch" in events and "retry" in events, entries[-5:]
    retry = next(e for e in decisions if e.get("SYMPHONY_EVENT") == "retry")
    assert retry.get("KIND") == "continuation" and retry.get("SESSION_ID"), retry
    # symphonyctl logs shows the run's workspace and hook lines too (issue 22, item 6).
    logs = c.run(["symphonyctl", "logs", "DEMO-1"]).stdout
    for line in ("event=workspace outcome=created", "event=hook hook=after_create outcome=ok"):
        assert line in logs, logs[-3000:]

    # The dashboard starts on its first connection and shows the dispatcher's state.
    state = json.loads(c.run(["python3", "-c", FETCH, STATE_URL]).stdout)
    assert state["counts"]["running"] == 0 and "codex_totals" in state, state
    assert state["codex_totals"]["total_tokens"] > 0, state
    assert unit_state(c, "symphony-dashboard.service") == "running"
    # Stopping the service leaves its socket listening: the next request starts it again.
    c.run(["systemctl", "stop", "symphony-dashboard.service"])
    listening = c.run(["systemctl", "is-active", "symphony-dashboard.socket"], check=False)
    assert listening.stdout.strip() == "active", listening.stdout
    again = json.loads(c.run(["python3", "-c", FETCH, STATE_URL]).stdout)
    assert "codex_totals" in again and unit_state(c, "symphony-dashboard.service") == "running"
    # The issue page shows the run's journal lines, read by the installed dashboard through
    # its systemd-journal group: the dispatcher's decision to dispatch DEMO-1 is among them.
    issue_page = c.run(["python3", "-c", FETCH, "http://127.0.0.1:4000/issues/DEMO-1"]).stdout
    assert 'id="journal-note"' not in issue_page, issue_page[-2000:]
    decision = r"<td>symphony-dispatcher\.service</td><td[^>]*>[^<]*event=dispatch outcome=started"
    assert re.search(decision, issue_page), issue_page[-3000:]
    assert "agent message" in issue_page  # the demo agent's closing words, from the audit log

    verify = c.run(["symphonyctl", "audit", "verify", "--dir", "/var/lib/symphony/audit"])
    # ... and still reaches the head the writer anchored in the journal (docs/audit.md).
    assert verify.stdout.startswith("ok ") and "journal anchor" in verify.stdout, verify.stdout
    assert verify.stdout.rstrip().endswith(") matches"), verify.stdout
    types = {r["type"] for r in hostile_issue.audit_records(c, "DEMO-1")[1]}
    assert {
        "dispatch", "prompt_sent", "agent_message", "tool_call", "tracker_write", "run_finished"
    } <= types, types  # fmt: skip

    # Issue 18: the same running suite, switched to a GitLab instance on this host (the
    # tests' fake GitLab inside the container), takes one issue filed there through to the
    # hand-off, which the fake sees (tests/e2e/gitlab_tracker.py).
    gitlab_tracker.start_fake(c)
    gitlab_tracker.switch_to_gitlab(c, lambda: str(status_json(c)["config"]["fingerprint"]))
    gitlab_tracker.file_issue(c)
    try:
        wait_until(
            "the agent to hand the GitLab issue off",
            lambda: "status::review" in gitlab_tracker.labels(c),
            timeout=180,
        )
    except AssertionError:
        raise AssertionError(journal_dump(c)) from None
    _, records = hostile_issue.audit_records(c, gitlab_tracker.IDENTIFIER)
    gitlab_tracker.check(c, {r["type"] for r in records})
    # Issue 21: the packaged webhook receiver, enabled as the docs say, in front of it.
    webhook_receiver.check(c, iid=1)


def test_pause_survives_restart_and_daemons_survive_kill_9(
    container: Container, deb_file: Path
) -> None:
    c = container
    start_suite(c, deb_file)
    c.run(["symphonyctl", "pause", "--reason", "maintenance"])
    c.run(["systemctl", "restart", "symphony-dispatcher.service"])
    wait_until("dispatcher back", lambda: unit_state(c, "symphony-dispatcher.service") == "running")
    status = json.loads(c.run(["symphonyctl", "status", "--json"]).stdout)
    reasons = status["pause"]["reasons"]
    assert status["pause"]["paused"] and [r["message"] for r in reasons] == ["maintenance"], status
    assert reasons[0]["by_uid"] == 0  # who paused: root, from SO_PEERCRED
    c.run(["symphonyctl", "issue", "new", "DEMO-2", "--title", "Not while paused"])
    # An operator holds a Todo issue before it was ever dispatched (issue 22 item 4, 0751).
    c.run(["symphonyctl", "issue", "new", "DEMO-3", "--title", "Held before dispatch"])
    held = c.run(["symphonyctl", "stop", "DEMO-3"]).stdout
    assert "DEMO-3 held before dispatch" in held, held
    time.sleep(8)  # more than one poll interval: nothing may start while paused
    assert issue_state(c, "DEMO-2") == "Todo"
    assert c.run(["test", "-e", "/var/lib/symphony/workspaces/DEMO-2"], check=False).returncode != 0

    c.run(["python3", "-c", FETCH, STATE_URL])  # activates the dashboard
    for daemon in (*DAEMONS, "dashboard"):
        unit = f"symphony-{daemon}.service"
        pid = main_pid(c, unit)
        c.run(["kill", "-9", pid])

        def restarted(unit: str = unit, old: str = pid) -> bool:
            return unit_state(c, unit) == "running" and main_pid(c, unit) not in (old, "0")

        wait_until(f"{unit} restarted", restarted)

    c.run(["symphonyctl", "resume"])
    wait_until(
        "DEMO-2 handled after resume",
        lambda: issue_state(c, "DEMO-2") == "Human Review",
        timeout=180,
    )
    # The hold outlived kill -9 of the dispatcher: DEMO-3 was not started on resume.
    status = json.loads(c.run(["symphonyctl", "status", "--json"]).stdout)
    assert [h["issue_identifier"] for h in status["held"]] == ["DEMO-3"], status
    assert issue_state(c, "DEMO-3") == "Todo"
    assert c.run(["test", "-e", "/var/lib/symphony/workspaces/DEMO-3"], check=False).returncode
    c.run(["symphonyctl", "release", "DEMO-3"])
    wait_until("DEMO-3 handled after release", handed_off(c, "DEMO-3"), timeout=180)
    c.run(["symphonyctl", "audit", "verify", "--dir", "/var/lib/symphony/audit"])

    # After the whole run (agents in sandboxes, kill -9 of every daemon): purge leaves
    # nothing of the package, down to the launcher's nftables table and veth ends.
    assert purge_leftovers(c) == []


SLOW_FIRST_ATTEMPT = """\
  before_run: |
    # The first attempt waits here, so the launcher can be killed with the run in flight.
    if [ ! -e .slow-once ]; then touch .slow-once; sleep 240; fi
  timeout_ms: 600000
"""


def status_json(c: Container) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(c.run(["symphonyctl", "status", "--json"]).stdout)
    return data


def test_a_launcher_crash_mid_run_retries_the_issue_once(
    container: Container, deb_file: Path
) -> None:
    """Issue 14 item 6 / note 0750: the run the crashed launcher lost is retried with backoff,
    audited as run_lost, and the issue is never dispatched twice at once."""
    c = container
    start_suite(c, deb_file)
    before = status_json(c)["config"]["fingerprint"]
    workflow = c.run(["cat", "/etc/symphony/WORKFLOW.md"]).stdout
    workflow = workflow.replace("hooks:\n", "hooks:\n" + SLOW_FIRST_ATTEMPT, 1)
    c.run(["tee", "/etc/symphony/WORKFLOW.md"], input=workflow)
    wait_until("slow workflow loaded", lambda: status_json(c)["config"]["fingerprint"] != before)

    c.run(["symphonyctl", "issue", "new", "DEMO-4", "--title", "Survive a launcher crash"])

    def running_run() -> str | None:
        rows = [r for r in status_json(c)["running"] if r["issue_identifier"] == "DEMO-4"]
        return str(rows[0]["run_id"]) if rows else None

    wait_until("DEMO-4 running", lambda: running_run() is not None, timeout=60)
    lost_run = running_run()
    time.sleep(3)  # well inside the before_run hook's sleep
    pid = main_pid(c, "symphony-launcher.service")
    c.run(["kill", "-9", pid])
    wait_until(
        "launcher restarted",
        lambda: unit_state(c, "symphony-launcher.service") == "running"
        and main_pid(c, "symphony-launcher.service") not in (pid, "0"),
    )

    def retrying() -> list[dict[str, Any]]:
        return [r for r in status_json(c)["retrying"] if r["issue_identifier"] == "DEMO-4"]

    # The slot is freed and the issue waits for its backoff (10 s): not "running" for good.
    wait_until("DEMO-4 retrying", lambda: bool(retrying()), timeout=60)
    [row] = retrying()
    assert row["kind"] == "failure" and row["attempt"] == 1, row
    assert "launcher no longer has this run" in row["error"], row
    try:
        wait_until("DEMO-4 handled by its second attempt", handed_off(c, "DEMO-4"), timeout=180)
    except AssertionError:
        raise AssertionError(journal_dump(c)) from None

    shown = c.run(
        ["symphonyctl", "audit", "show", "--dir", "/var/lib/symphony/audit", "--issue",
         "DEMO-4", "--json"]
    ).stdout  # fmt: skip
    records = [json.loads(line) for line in shown.splitlines() if line.strip()]
    dispatches = [r["payload"].get("attempt") for r in records if r["type"] == "dispatch"]
    assert dispatches[:2] == [None, 1], dispatches
    lost = [r for r in records if r["type"] == "run_finished"
            and r["payload"].get("error_code") == "run_lost"]  # fmt: skip
    assert [r["payload"]["run_id"] for r in lost] == [lost_run], lost
    journal = c.run(
        ["journalctl", "--no-pager", "-o", "json", "ISSUE_IDENTIFIER=DEMO-4",
         "SYMPHONY_EVENT=run_lost"]
    ).stdout  # fmt: skip
    [entry] = [json.loads(line) for line in journal.splitlines()]
    assert entry["_SYSTEMD_UNIT"] == "symphony-dispatcher.service" and entry["PRIORITY"] == "4"
