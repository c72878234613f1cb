"""A stop that lands after the agent's last turn still ends the attempt with run_finished.

The dispatcher often sees the hand-off state before the launcher's own post-turn refresh
does, so its stop_run arrives while the worker runs ``after_run``. That cancellation used to
skip the run_finished event: the dispatcher never acknowledged the run, the launcher listed
it forever and the audit log had no run_finished for it (bench/pipeline_throughput.py hung
on such runs). The agent here is a stand-in (the outside world); the workspace manager and
its after_run hook are real.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from symphonyd.core.api.launcher import RunEvent
from symphonyd.core.api.shared import TokenTotals
from symphonyd.core.config import HooksConfig
from symphonyd.core.issue import Issue, build_issue
from symphonyd.launcher.agents.session import AgentSession, TurnResult
from symphonyd.launcher.worker import WorkerDeps, run_worker_attempt
from symphonyd.launcher.workspace import WorkspaceManager

ISSUE = build_issue(id="i-1", identifier="ABC-1", title="t", state="Todo", dispatchable=True)


class OneTurnAgent(AgentSession):
    async def start(self) -> None:
        return None

    async def run_turn(self, prompt: str, *, title: str | None = None) -> TurnResult:
        return TurnResult("completed")

    async def interrupt(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @property
    def pid(self) -> int | None:
        return None

    @property
    def tokens(self) -> TokenTotals:
        return TokenTotals()

    def seconds_since_activity(self) -> float:
        return 0.0


def deps(root: Path, events: list[RunEvent]) -> WorkerDeps:
    marker = root / "after_run.started"
    hooks = HooksConfig(after_run=f"touch {marker}; sleep 5", timeout_ms=20_000)

    async def refresh(issue_id: str) -> Issue | None:
        return None  # gone from the active states: the attempt succeeded

    return WorkerDeps(
        workspaces=WorkspaceManager(root, hooks),
        render=lambda issue, attempt: "prompt",
        open_session=lambda path, sink: OneTurnAgent(),
        refresh_issue=refresh,
        is_active=lambda issue: True,
        emit=events.append,
    )


def test_stop_during_after_run_still_emits_run_finished(tmp_path: Path) -> None:
    events: list[RunEvent] = []

    async def main() -> None:
        task = asyncio.create_task(run_worker_attempt("run-1", ISSUE, None, deps(tmp_path, events)))
        while not (tmp_path / "after_run.started").exists():
            assert not task.done()
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 60))
    finished = [e for e in events if e.event == "run_finished"]
    assert len(finished) == 1
    # The agent had finished its work: the outcome says so, not "cancelled".
    assert finished[0].outcome is not None and finished[0].outcome.status == "succeeded"
