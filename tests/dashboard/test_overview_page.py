"""The overview's readable parts, served by the real dashboard process: issue titles and
tracker links, the workspace path, rate limits as a table, unchecked health as neutral."""

from __future__ import annotations

import dataclasses
import re

import httpx

from symphonyd.core.api.dispatcher import DaemonHealthRow, StateSnapshot
from tests.dashboard.conftest import Running
from tests.dashboard.harness import wait_for

LIMITS = {
    "primary": {"used_percent": 42.5, "window_minutes": 300, "resets_at": 1830000000},
    "secondary": {"used_percent": 7, "window_minutes": 10080, "resets_at": 1830500000},
    "plan_type": "pro",
}


def _rows(html: str, heading: str) -> str:
    start = html.index(f"<h2>{heading}</h2>")
    return html[start : html.index("</section>", start)]


def test_titles_links_workspace_and_a_rate_limit_table(running: Running) -> None:
    def change(snap: StateSnapshot) -> StateSnapshot:
        return dataclasses.replace(snap, rate_limits=LIMITS)

    running.dispatcher.update(change)
    wait_for(lambda: "used_percent" in httpx.get(running.base + "/api/v1/state").text)
    html = httpx.get(running.base + "/").text
    sessions = _rows(html, "Running sessions")
    assert '<a href="/issues/MT-1">MT-1</a>' in sessions
    assert '<span class="title">Parser drops the last line of CRLF files</span>' in sessions
    assert 'href="https://tracker.invalid/issues/MT-1"' in sessions
    assert "<code>/var/lib/symphony/workspaces/MT-1</code>" in sessions
    assert '<div class="msg">on w2</div>' in sessions  # the worker host the run is bound to
    limits = html[html.index("<h2>Rate limits</h2>") :]
    assert "<pre>" not in limits and "used_percent" not in limits  # no raw JSON dump
    assert "<th>used percent</th><th>window minutes</th><th>resets at</th>" in limits
    assert re.search(r"<th scope=row>primary</th><td>42.5&nbsp;%</td><td>300</td><td><time", limits)
    assert "<th scope=row>plan type</th><td>pro</td>" in limits


def test_unchecked_health_is_neutral_and_a_failure_stays_red(running: Running) -> None:
    def change(snap: StateSnapshot) -> StateSnapshot:
        daemons = [
            DaemonHealthRow("tracker", False, None, None),  # never checked yet
            DaemonHealthRow("launcher", False, "connection refused", "2026-11-22T06:00:00Z"),
        ]
        return dataclasses.replace(snap, daemons=daemons)

    running.dispatcher.update(change)
    wait_for(lambda: "refused" in httpx.get(running.base + "/api/v1/state").text)
    health = _rows(httpx.get(running.base + "/").text, "Health")
    tracker = health[health.index("<td>tracker</td>") : health.index("<td>launcher</td>")]
    assert 'class="dot unknown"' in tracker and "not checked yet" in tracker
    assert "failing" not in tracker and "dot down" not in tracker
    launcher = health[health.index("<td>launcher</td>") :]
    assert 'class="dot down"' in launcher.split("</tr>")[0] and "failing" in launcher
    audit = health[health.index("dashboard → audit") :].split("</tr>")[0]
    assert "dot unknown" in audit and "no audit socket configured" in audit
