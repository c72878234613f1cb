"""Random sequences of tracker changes, run exits, ticks, pauses, stops and restarts of the
dispatcher and of the launcher.

After every step: limits hold at each start, no issue has two live runs, every claim is
running or retry-queued, nothing starts while paused or held.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from symphonyd.core.api.launcher import RunEvent, RunOutcome, StartRun, StartRunResult
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import state_key
from symphonyd.dispatcher.orchestrator import Orchestrator
from tests.dispatcher.doubles import T0, MemoryLauncher, issue, tokens
from tests.dispatcher.harness import Harness

MAX = 3
PER_STATE = {"in progress": 1}
STATES = ["Todo", "In Progress", "Backlog", "Done"]
ISSUES = st.integers(min_value=1, max_value=7)


class CheckingLauncher(MemoryLauncher):
    """Asserts the dispatcher's promises at the moment a run is asked to start."""

    orch: Orchestrator | None = None

    async def start_run(self, req: StartRun) -> StartRunResult:
        orch = self.orch
        assert orch is not None
        assert not orch.paused, "a run started while dispatch was paused"
        assert orch.holds.get(req.issue.id) is None, "a held issue was started"
        assert len(orch.running) <= MAX
        key = state_key(req.issue.state)
        assert orch.running_by_state[key] <= PER_STATE.get(key, MAX)
        assert not self.live_for(req.issue.id), f"{req.issue.identifier} started twice"
        return await super().start_run(req)


class DispatcherMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="dispatcher-stateful-"))
        self.loop = asyncio.new_event_loop()
        self.h = Harness(
            self.dir,
            max_concurrent_agents=MAX,
            max_concurrent_agents_by_state=PER_STATE,
            stall_timeout_ms=120_000,
            tokens_per_issue=5_000,
        )
        self.launcher = CheckingLauncher(self.h.clock.now)
        self.h.launcher = self.launcher
        self.h.orch = self.h.new_orchestrator()
        self.launcher.orch = self.h.orch
        self.version = 0
        self.lost: list[RunEvent] = []  # ends of runs a restarted launcher forgot
        self.unsynced = False  # the launcher restarted and no resync has succeeded since
        self.run(self.h.orch.start())

    def run(self, coro: object) -> None:
        # Bounded so a hang fails with a traceback instead of stalling the suite.
        self.loop.run_until_complete(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]

    def teardown(self) -> None:
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _bump(self) -> timedelta:
        self.version += 1
        return timedelta(minutes=self.version)

    @rule(n=ISSUES, state=st.sampled_from(STATES), prio=st.none() | st.integers(0, 5))
    def put_issue(self, n: int, state: str, prio: int | None) -> None:
        self.h.tracker.put(issue(n, state, priority=prio, updated=T0 + self._bump()))

    @rule(n=ISSUES)
    def delete_issue(self, n: int) -> None:
        self.h.tracker.issues.pop(f"id-{n}", None)

    @rule()
    def tick(self) -> None:
        retrying_resync = self.h.orch.resync_due
        self.run(self.h.orch.tick())
        if retrying_resync and not self.h.orch.resync_due:
            self.unsynced = False

    @rule(ms=st.sampled_from([500, 1_000, 10_000, 60_000, 200_000]))
    def advance_and_fire_retries(self, ms: int) -> None:
        self.h.clock.advance(ms)
        self.run(self.h.orch.fire_due_retries())

    @precondition(lambda self: bool(self.h.launcher.live()))
    @rule(
        data=st.data(),
        status=st.sampled_from(["succeeded", "failed", "blocked", "timed_out"]),
    )
    def run_exits(self, data: st.DataObject, status: str) -> None:
        runs = sorted(r.info.run_id for r in self.h.launcher.live())
        run_id = data.draw(st.sampled_from(runs))
        self.h.launcher.finish(run_id, RunOutcome(status))  # type: ignore[arg-type]

    @rule()
    def deliver_events(self) -> None:
        self.run(self.h.deliver())

    @precondition(lambda self: bool(self.h.orch.running))
    @rule(data=st.data(), amount=st.integers(0, 3_000))
    def token_update(self, data: st.DataObject, amount: int) -> None:
        issue_id = data.draw(st.sampled_from(sorted(self.h.orch.running)))
        entry = self.h.orch.running[issue_id]
        total = entry.tokens.total_tokens + amount
        self.run(self.h.send(issue_id, "tokens", tokens=tokens(total)))

    @rule(reason=st.sampled_from(["deploy window", "incident 42", "budget review"]))
    def pause(self, reason: str) -> None:
        self.run(self.h.orch.pause(reason, uid=1000))

    @rule()
    def resume(self) -> None:
        self.run(self.h.orch.resume(uid=1000))

    @rule(n=ISSUES, by_id=st.booleans())
    def stop(self, n: int, by_id: bool) -> None:
        """Running, retry-queued, waiting in the tracker (0751) or unknown."""
        try:
            self.run(self.h.orch.stop(f"id-{n}" if by_id else f"MT-{n}", uid=1000))
        except SymphonyError as exc:
            assert exc.error_code in ("issue_not_found", "tracker_unavailable")

    @precondition(lambda self: len(self.h.orch.holds) > 0)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        names = sorted(h.issue_identifier for h in self.h.orch.holds.rows())
        self.run(self.h.orch.release(data.draw(st.sampled_from(names)), uid=1000))

    @rule(which=st.sampled_from(["tracker", "audit", "launcher"]), down=st.booleans())
    def outage(self, which: str, down: bool) -> None:
        getattr(self.h, which).fail = down

    @rule()
    def crash_and_restart(self) -> None:
        self.h.launcher.fail = False  # a restart needs the launcher to say what runs
        self.h.launcher.events.clear()  # events in flight to the dead process are lost
        self.h.orch = self.h.new_orchestrator()
        self.launcher.orch = self.h.orch
        self.run(self.h.orch.start())
        self.unsynced = False  # start() read the launcher's table

    @rule()
    def launcher_restart(self) -> None:
        """The launcher's agents die with it and the new one has no runs (0750); the event
        stream reconnects (resync) only later, so ticks can come in between."""
        self.lost.extend(
            RunEvent(
                r.info.run_id,
                r.info.issue_id,
                "run_finished",
                "2026-03-01T12:00:00Z",
                outcome=RunOutcome("cancelled"),
            )
            for r in self.h.launcher.live()
        )
        self.h.launcher.runs.clear()
        self.h.launcher.events.clear()
        self.unsynced = True

    @rule()
    def resync(self) -> None:
        self.run(self.h.orch.resync_runs())
        if not self.h.orch.resync_due:
            self.unsynced = False

    @precondition(lambda self: bool(self.lost))
    @rule()
    def late_end_of_a_lost_run(self) -> None:
        self.run(self.h.orch.handle_run_event(self.lost.pop(0)))

    @invariant()
    def claims_are_running_or_retrying(self) -> None:
        orch = self.h.orch
        assert orch.claimed == set(orch.running) | set(orch.retries)
        assert not (set(orch.running) & set(orch.retries))

    @invariant()
    def once_resynced_no_run_is_a_phantom(self) -> None:
        """After a resync every running entry is a run the launcher has (0750): none is kept
        "running" after the launcher forgot it."""
        if not self.unsynced:
            for entry in self.h.orch.running.values():
                assert entry.run_id in self.h.launcher.runs, f"{entry.run_id} is a phantom"

    @invariant()
    def no_issue_runs_twice(self) -> None:
        for issue_id in {r.info.issue_id for r in self.h.launcher.live()}:
            assert len(self.h.launcher.live_for(issue_id)) <= 1

    @invariant()
    def held_issues_are_not_claimed(self) -> None:
        orch = self.h.orch
        for h in orch.holds.rows():
            assert h.issue_id not in orch.claimed

    @invariant()
    def global_limit_holds(self) -> None:
        assert len(self.h.orch.running) <= MAX


DispatcherMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDispatcherMachine = DispatcherMachine.TestCase
