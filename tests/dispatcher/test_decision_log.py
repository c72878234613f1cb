"""Scheduling decisions reach the journal (SPEC 13.1), once each, with the issue's fields.

The dispatcher runs as production assembles it (``assemble`` + ``loops``) against
tracker, launcher and audit doubles on real Unix sockets; its records go through the
production ``JournalHandler``, so the fields asserted are the journal fields an operator
filters on (``journalctl ISSUE_IDENTIFIER=MT-1``).
"""

from __future__ import annotations

import asyncio
import os

from symphonyd.core.api.launcher import RunEvent, RunOutcome
from tests.dispatcher.doubles import issue, run_async
from tests.dispatcher.journal_capture import JournalCapture, journal_capture
from tests.dispatcher.socket_doubles import SocketWorld, eventually, socket_world
from tests.dispatcher.test_daemon_sockets import ctl, dispatcher, write_workflow

INFO, WARNING = "6", "4"


async def session(world: SocketWorld, issue_id: str, session_id: str) -> str:
    run_id = next(r.run_id for r in world.launcher.started if r.issue.id == issue_id)
    world.emit(RunEvent(run_id, issue_id, "session_started", "2026-03-01T12:00:00Z",
                        session_id=session_id))  # fmt: skip
    return run_id


async def one(journal: JournalCapture, event: str, what: str, **match: str) -> dict[str, str]:
    await eventually(lambda: journal.events(event, **match), what)
    [entry] = journal.events(event, **match)
    return entry


@run_async
async def test_decisions_are_journal_lines_with_issue_fields_and_no_repeats() -> None:
    async with socket_world() as world:
        write_workflow(world.root / "WORKFLOW.md", interval=100, backoff=400)
        world.tracker.put(issue(1), issue(2))
        with journal_capture() as journal:
            async with dispatcher(world) as orch:
                await eventually(lambda: len(world.launcher.started) == 2, "two runs")
                d1 = await one(journal, "dispatch", "dispatch MT-1", ISSUE_IDENTIFIER="MT-1")
                assert d1["ISSUE_ID"] == "id-1" and d1["OUTCOME"] == "started"
                runs = {r.issue.id: r.run_id for r in world.launcher.started}
                assert d1["PRIORITY"] == INFO and d1["RUN_ID"] == runs["id-1"]
                assert d1["MESSAGE"].startswith("event=dispatch outcome=started issue_id=id-1")

                run1 = await session(world, "id-1", "thread-1")
                await eventually(lambda: orch.running["id-1"].session_id == "thread-1", "event")
                code, _, _ = await ctl(world, "pause", "--reason", "deploy window")
                assert code == 0
                p = await one(journal, "pause", "operator pause", REASON="operator")
                assert p["DETAIL"] == "deploy window" and p["OPERATOR_UID"] == str(os.getuid())

                # A failed run: the retry says why and when, with the session.
                world.launcher.finish(run1, RunOutcome("failed", error_code="turn_failed"))
                world.emit_pending()
                r = await one(journal, "retry", "failure retry", KIND="failure")
                assert r["ISSUE_IDENTIFIER"] == "MT-1" and r["SESSION_ID"] == "thread-1"
                assert r["ATTEMPT"] == "1" and r["DUE_IN_MS"] == "400" and r["DUE_AT"]
                assert "turn_failed" in r["REASON"]
                # While paused the due retry is re-queued every poll interval: one line only.
                await one(journal, "retry", "paused requeue", KIND="requeue")
                await asyncio.sleep(0.6)
                assert len(journal.events("retry", KIND="requeue")) == 1

                # The tracker moves MT-2 out of the active states: reconciliation stops it.
                world.tracker.move("id-2", "Backlog")
                s = await one(journal, "reconcile_stop", "reconcile stop", ISSUE_ID="id-2")
                assert s["REASON"] == "inactive" and s["STATE"] == "Backlog"
                assert s["ISSUE_IDENTIFIER"] == "MT-2" and s["PRIORITY"] == INFO

                # A tracker outage over several ticks: one warning, then one recovery line.
                world.tracker.fail = True
                await eventually(lambda: orch.pauses.has("tracker_unavailable"), "outage seen")
                calls = len(world.tracker.calls)
                await eventually(lambda: len(world.tracker.calls) >= calls + 4, "more polls")
                world.tracker.fail = False
                back = await one(journal, "daemon_call", "recovery", OUTCOME="recovered")
                [down] = journal.events("daemon_call", OUTCOME="failed")
                assert down["DAEMON"] == "tracker" and down["PRIORITY"] == WARNING
                assert "tracker down" in down["ERROR"]
                assert back["DAEMON"] == "tracker" and int(back["FAILURES"]) >= 4
                assert back["PRIORITY"] == INFO
                [raised] = journal.events("pause", REASON="tracker_unavailable")
                assert raised["PRIORITY"] == WARNING
                await one(journal, "resume", "tracker pause lifted", REASON="tracker_unavailable")

                # MT-1 went Done while it waited; on resume its retry cleans its workspace.
                world.tracker.move("id-1", "Done")
                code, _, _ = await ctl(world, "resume")
                assert code == 0
                await one(journal, "resume", "operator resume", REASON="operator")
                t = await one(journal, "terminal_cleanup", "terminal cleanup", ISSUE_ID="id-1")
                assert t["ISSUE_IDENTIFIER"] == "MT-1" and t["STATE"] == "Done"
                await eventually(lambda: "MT-1" in world.launcher.removed, "workspace removed")

                # Nothing changes any more: ticks go on, the journal stays quiet.
                await asyncio.sleep(0.3)
                quiet_from = len(journal.entries)
                calls = len(world.tracker.calls)
                await eventually(lambda: len(world.tracker.calls) >= calls + 5, "idle ticks")
                assert journal.entries[quiet_from:] == []
    # Every issue line carries both issue fields; nothing was logged twice for one decision.
    for entry in journal.entries:
        if "ISSUE_ID" in entry or "ISSUE_IDENTIFIER" in entry:
            assert entry["ISSUE_ID"] and entry["ISSUE_IDENTIFIER"], entry
    assert len(journal.events("dispatch")) == 2


@run_async
async def test_a_stall_is_a_warning_with_the_session() -> None:
    async with socket_world() as world:
        codex = "codex:\n  stall_timeout_ms: 2000\n"  # room for the first event under load
        write_workflow(world.root / "WORKFLOW.md", interval=100, extra=codex)
        world.tracker.put(issue(3))
        with journal_capture() as journal:
            async with dispatcher(world):
                await eventually(lambda: len(world.launcher.started) == 1, "run")
                run_id = await session(world, "id-3", "thread-3")
                stall = await one(journal, "stall", "stall", ISSUE_IDENTIFIER="MT-3")
                assert stall["SESSION_ID"] == "thread-3" and stall["RUN_ID"] == run_id
                assert stall["PRIORITY"] == WARNING and int(stall["IDLE_MS"]) > 2000
                retry = await one(journal, "retry", "retry after stall", ISSUE_ID="id-3")
                assert retry["KIND"] == "failure" and retry["REASON"].startswith("stalled")
                assert retry["SESSION_ID"] == "thread-3"
                await eventually(lambda: any(s.reason == "stalled"
                                             for s in world.launcher.stopped), "stop")  # fmt: skip
