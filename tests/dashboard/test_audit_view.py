"""Audit records and chain verification through the real audit daemon and a real dashboard."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from symphonyd.audit.reader import query
from symphonyd.audit.store import AuditStore, Sender
from symphonyd.core.api.audit import (
    AUDIT_APPEND,
    AUDIT_VERIFY,
    AuditAppend,
    AuditEventIn,
    AuditQuery,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.errors import SymphonyError, ValidationError
from symphonyd.runtime.ipc_client import IpcClient
from tests.dashboard.conftest import WithAudit, append_records


def test_records_filter_and_issue_page(with_audit: WithAudit) -> None:
    base = with_audit.dashboard.base
    body = httpx.get(base + "/api/v1/audit").json()
    types = [r["type"] for r in body["records"]]
    assert types == [
        "run_finished", "egress_deny", "run_finished", "dispatch", "dispatch", "genesis",
    ]  # fmt: skip
    assert body["truncated"] is False
    only = httpx.get(base + "/api/v1/audit", params={"type": "dispatch", "limit": 1}).json()
    assert [r["issue_identifier"] for r in only["records"]] == ["MT-2"] and only["truncated"]
    assert httpx.get(base + "/api/v1/audit", params={"limit": 0}).status_code == 400
    page = httpx.get(base + "/issues/MT-1").text
    assert "egress denied" in page and "denied.test:443" in page
    assert "turn_failed" not in page  # MT-2's failure is not MT-1's record
    audit_page = httpx.get(base + "/audit", params={"type": "egress_deny"}).text
    assert "denied.test" in audit_page and "run-2" not in audit_page


def test_verify_reports_ok_then_pinpoints_tampering(with_audit: WithAudit) -> None:
    base = with_audit.dashboard.base
    ok = httpx.post(base + "/api/v1/audit/verify", headers=with_audit.control()).json()
    assert ok == {
        "ok": True,
        "records": 6,
        "files": 1,
        "head_seq": 5,
        "broken_at": None,
        "reason": None,
    }
    (day_file,) = with_audit.audit_dir.glob("*.ndjson")
    lines = day_file.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[2])
    record["payload"]["run_id"] = "run-forged"
    lines[2] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    day_file.write_bytes(b"".join(lines))
    bad = httpx.post(base + "/api/v1/audit/verify", headers=with_audit.control()).json()
    assert bad["ok"] is False
    assert bad["broken_at"] == f"{day_file.name}:3"
    assert bad["reason"]


def test_metrics_count_dispatches_failures_and_egress_denials(with_audit: WithAudit) -> None:
    text = httpx.get(with_audit.dashboard.base + "/metrics").text
    assert "symphony_dashboard_audit_up 1" in text
    assert "symphony_dispatches_total 2" in text
    assert 'symphony_run_failures_total{reason="turn_failed"} 1' in text
    assert "symphony_egress_denials_total 1" in text
    append_records(with_audit.audit.sock("dispatcher"))  # counted incrementally, not from scratch
    text = httpx.get(with_audit.dashboard.base + "/metrics").text
    assert "symphony_dispatches_total 4" in text


def test_metrics_count_egress_denials_carried_in_summaries(with_audit: WithAudit) -> None:
    """An agent's repeated denials arrive as counts in egress_summary records (docs/audit.md)."""
    summary = {
        "agent_id": "r-9",
        "interval_s": 60,
        "seconds": 60,
        "total": 46,
        "counts": [
            {"type": "egress_deny", "via": "dns", "host": "denied.test", "count": 41},
            {"type": "egress_allow", "via": "dns", "host": "allowed.test", "count": 5},
        ],
    }

    async def send() -> None:
        async with await IpcClient.connect(with_audit.audit.sock("dispatcher")) as client:
            record = AuditEventIn(type="egress_summary", payload=summary)
            await client.call(AUDIT_APPEND, AuditAppend([record]))

    asyncio.run(asyncio.wait_for(send(), 30))
    text = httpx.get(with_audit.dashboard.base + "/metrics").text
    assert "symphony_egress_denials_total 42" in text  # the one record and the 41 counted


def test_read_methods_are_only_on_the_dashboard_socket(with_audit: WithAudit) -> None:
    async def ask() -> None:
        async with await IpcClient.connect(with_audit.audit.sock("dispatcher")) as client:
            await client.call(AUDIT_VERIFY, Empty())

    with pytest.raises(SymphonyError) as caught:
        asyncio.run(asyncio.wait_for(ask(), 30))
    assert caught.value.error_code == "unknown_method"


def test_query_limit_is_bounded(tmp_path: Path) -> None:
    for limit in (0, 501):
        with pytest.raises(ValidationError):
            query(tmp_path, AuditQuery(limit=limit))


def test_since_includes_records_within_the_named_second(tmp_path: Path) -> None:
    store = AuditStore(
        tmp_path, writer=Sender(uid=0, pid=1), clock=lambda: "2026-11-22T06:00:00.500000Z"
    )
    store.open()
    store.close()
    found = query(tmp_path, AuditQuery(since="2026-11-22T06:00:00Z"))
    assert [r.type for r in found.records] == ["genesis"]
    assert query(tmp_path, AuditQuery(since="2026-11-22T06:00:01Z")).records == []


def test_a_finished_issue_has_its_history_page(with_history: WithAudit) -> None:
    base = with_history.dashboard.base
    page = httpx.get(base + "/issues/MT-3")  # not live: the dispatcher double has no MT-3
    assert page.status_code == 200
    assert "nothing live for this issue" in page.text and "class='banner neutral'" in page.text
    assert "Runs (1)" in page.text and "timed_out" in page.text and "turn_timeout" in page.text
    # The agent's message and command, escaped, in the run's transcript. No journal has lines
    # for this issue: where none is readable (a CI host without systemd) the page says so in
    # a neutral note, where one is (a booted container) the run's journal list is empty.
    assert "I will fix the parser &lt;script&gt;" in page.text and "<script>alert" not in page.text
    assert "-lc &#x27;pytest -q tests&#x27; (exit 1)" in page.text
    note = 'class="banner neutral" id="journal-note"' in page.text
    assert note != ("No journal lines in this run&#x27;s time window." in page.text)
    unknown = httpx.get(base + "/issues/NOPE-1")
    assert unknown.status_code == 404 and "No runs recorded for this issue." in unknown.text
