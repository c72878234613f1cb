"""The SPEC 16.5 worker attempt driving the real codex against the mock model API.

Real parts throughout: the workspace manager with real hook scripts, the Liquid prompt
template, the codex binary; only the model API is a local stand-in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.launcher import RunEvent, RunOutcome
from symphonyd.core.config import HooksConfig
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue, build_issue
from symphonyd.core.prompt_guard import guarded_issue_data
from symphonyd.core.redact import Redactor
from symphonyd.core.template import compile_prompt
from symphonyd.launcher.agents.codex import CodexSession, CodexSessionConfig
from symphonyd.launcher.agents.session import AgentSession, EventSink, Timeouts
from symphonyd.launcher.worker import WorkerAttempt, WorkerDeps, run_worker_attempt
from symphonyd.launcher.workspace import WorkspaceManager
from tests.launcher.agents.conftest import AgentDirs, codex_command
from tests.launcher.agents.mock_models import MockServer, Reply, responses_text

pytestmark = pytest.mark.agents


HOOKS = HooksConfig(
    before_run='echo "before_run $ISSUE_IDENTIFIER" >> ../hooks.log',
    after_run='echo "after_run $ISSUE_IDENTIFIER" >> ../hooks.log',
    timeout_ms=10_000,
)
TEMPLATE = compile_prompt(
    "Work on {{ issue.identifier }}.\n{{ issue.description }}\nAttempt: {{ attempt }}"
)


class RecordingWorkspaces(WorkspaceManager):
    """The real manager; ``calls`` reads back what its real hooks wrote."""

    def __init__(self, root: Path, hooks: HooksConfig = HOOKS) -> None:
        super().__init__(root, hooks)

    @property
    def calls(self) -> list[str]:
        log = self.root / "hooks.log"
        lines = log.read_text().split("\n") if log.exists() else []
        assert all(line.endswith(" ABC-1") for line in lines if line)  # env contract
        return [line.split()[0] for line in lines if line]


ISSUE = build_issue(
    id="i-1",
    identifier="ABC-1",
    title="Make it pong",
    state="In Progress",
    dispatchable=True,
    description="TASK-BODY-7",
)


@dataclass
class Harness:
    dirs: AgentDirs
    workspaces: RecordingWorkspaces
    events: list[RunEvent] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[AgentSession] = field(default_factory=list)

    def deps(
        self,
        refresh: Callable[[str], Any],
        *,
        max_turns: int = 5,
        command: str | None = None,
        stall: float = 60,
    ) -> WorkerDeps:
        def open_session(path: Path, sink: EventSink) -> AgentSession:
            config = CodexSessionConfig(
                command=command or codex_command(), timeouts=Timeouts(read=20, turn=60)
            )
            s = CodexSession(
                path, config, self.dirs.codex_env(), workspace_root=self.dirs.root, on_event=sink
            )
            self.sessions.append(s)
            return s

        return WorkerDeps(
            workspaces=self.workspaces,
            render=lambda issue, attempt: TEMPLATE.render(guarded_issue_data(issue), attempt),
            open_session=open_session,
            refresh_issue=refresh,
            is_active=lambda issue: issue.state == "In Progress",
            emit=self.events.append,
            max_turns=max_turns,
            stall_timeout=stall,
            audit=lambda kind, payload: self.audits.append({"type": kind, **payload}),
        )

    def run(self, deps: WorkerDeps) -> RunOutcome:
        coro = run_worker_attempt("run-1", ISSUE, None, deps)
        return asyncio.run(asyncio.wait_for(coro, 90))

    def names(self) -> list[str]:
        return [e.event for e in self.events]


@pytest.fixture
def harness(agent_dirs: AgentDirs) -> Harness:
    return Harness(agent_dirs, RecordingWorkspaces(agent_dirs.root))


def states(*values: str | None) -> Callable[[str], Any]:
    queue = list(values)

    async def refresh(issue_id: str) -> Issue | None:
        assert issue_id == ISSUE.id
        state = queue.pop(0)
        if state is None:
            return None
        return build_issue(
            id=ISSUE.id,
            identifier=ISSUE.identifier,
            title=ISSUE.title,
            state=state,
            dispatchable=True,
        )

    return refresh


def test_continues_while_active_then_stops_when_issue_leaves(harness: Harness) -> None:
    with MockServer(lambda n, body: responses_text(f"turn {n}", rid=f"r{n}")) as mock:
        harness.dirs.write_codex_config(mock.port)
        outcome = harness.run(harness.deps(states("In Progress", "Done")))
        first_input = str(mock.requests[0]["body"]["input"])
        second_input = str(mock.requests[1]["body"]["input"])
    assert outcome == RunOutcome("succeeded")
    assert harness.workspaces.calls == ["before_run", "after_run"]
    # str() of the request shows newlines escaped
    assert r"<untrusted-description>\nTASK-BODY-7\n</untrusted-description>" in first_input
    names = harness.names()
    assert names.count("turn_completed") == 2 and "session_started" in names
    assert names[-1] == "run_finished" and harness.events[-1].outcome == outcome
    assert harness.events[-1].turn_count == 2 and harness.events[-1].tokens
    # first prompt: preamble + rendered template; continuation: guidance only
    prompts = [a for a in harness.audits if a["type"] == "prompt_sent"]
    assert [p["turn"] for p in prompts] == [1, 2]
    assert prompts[0]["preview"].startswith("You are working on one issue")
    assert len(prompts[0]["preview"]) == 500
    assert "TASK-BODY-7" in first_input and "TASK-BODY-7" not in prompts[1]["preview"]
    assert len(prompts[0]["sha256"]) == 64
    assert "turn 2 of 5" in second_input
    assert all(e.run_id == "run-1" and e.issue_id == "i-1" for e in harness.events)
    assert all(s.pid is None or s.seconds_since_activity() >= 0 for s in harness.sessions)


def test_first_prompt_scrub_runs_while_the_agent_starts(harness: Harness) -> None:
    """The first prompt's preview scrub (a round trip to the tracker daemon) begins before the
    agent's handshake is over, not after it; the prompt_sent record still comes first."""
    thread_at_scrub: list[str | None] = []

    async def scrub(text: str) -> str:
        session = harness.sessions[-1] if harness.sessions else None
        thread_at_scrub.append(session.thread_id if isinstance(session, CodexSession) else "-")
        return text

    with MockServer(lambda n, body: responses_text("ok", rid=f"r{n}")) as mock:
        harness.dirs.write_codex_config(mock.port)
        deps = dataclasses.replace(harness.deps(states("Done")), scrub=scrub)
        outcome = harness.run(deps)
    assert outcome.status == "succeeded"
    # The first scrub (the prompt's; the agent's messages come later): the session existed,
    # thread/start was not answered yet.
    assert thread_at_scrub[0] is None
    prompts = [a for a in harness.audits if a["type"] == "prompt_sent"]
    assert [p["turn"] for p in prompts] == [1] and prompts[0]["preview"]
    assert harness.audits[0]["type"] == "prompt_sent"


def test_max_turns_bounds_the_loop(harness: Harness) -> None:
    with MockServer(lambda n, body: responses_text("ok", rid=f"r{n}")) as mock:
        harness.dirs.write_codex_config(mock.port)
        outcome = harness.run(harness.deps(states("In Progress"), max_turns=1))
        assert len(mock.requests) == 1
    assert outcome.status == "succeeded"


def test_missing_issue_on_refresh_ends_normally(harness: Harness) -> None:
    with MockServer(lambda n, body: responses_text("ok")) as mock:
        harness.dirs.write_codex_config(mock.port)
        assert harness.run(harness.deps(states(None))).status == "succeeded"


def test_before_run_failure_aborts_without_agent(harness: Harness) -> None:
    failing = HooksConfig(
        before_run='echo "before_run $ISSUE_IDENTIFIER" >> ../hooks.log; exit 3',
        after_run=HOOKS.after_run,
    )
    harness.workspaces = RecordingWorkspaces(harness.dirs.root, failing)
    outcome = harness.run(harness.deps(states()))
    assert outcome.status == "failed" and outcome.error_code
    assert "before_run" in (outcome.error or "")
    assert harness.sessions == [] and harness.workspaces.calls == ["before_run"]
    assert harness.names() == ["run_finished"]


def test_refresh_error_fails_and_still_runs_after_run(harness: Harness) -> None:
    async def broken(issue_id: str) -> Issue | None:
        raise ConnectionError("tracker down")

    with MockServer(lambda n, body: responses_text("ok")) as mock:
        harness.dirs.write_codex_config(mock.port)
        outcome = harness.run(harness.deps(broken))
    assert outcome.status == "failed" and outcome.error_code == "issue_state_refresh_error"
    assert harness.workspaces.calls[-1] == "after_run"


def test_startup_failure_is_reported_with_its_code(harness: Harness) -> None:
    outcome = harness.run(harness.deps(states(), command="/nonexistent/codex app-server"))
    assert outcome.status == "failed" and outcome.error_code == "codex_not_found"
    assert harness.workspaces.calls[-1] == "after_run"


def test_model_failure_fails_the_attempt(harness: Harness) -> None:
    with MockServer(lambda n, body: Reply(status=401)) as mock:
        harness.dirs.write_codex_config(mock.port)
        outcome = harness.run(harness.deps(states()))
    assert outcome.status == "failed" and outcome.error_code == "turn_failed"


def test_stalled_agent_is_interrupted(harness: Harness) -> None:
    release = threading.Event()
    with MockServer(lambda n, body: (release.wait(30), responses_text("late"))[1]) as mock:
        harness.dirs.write_codex_config(mock.port)
        try:
            outcome = harness.run(harness.deps(states(), stall=1.0))
        finally:
            release.set()
    # The outcome and the events say why, should this ever end otherwise on a busy machine.
    why = (outcome, harness.names(), [s.seconds_since_activity() for s in harness.sessions])
    assert outcome.status == "stalled" and outcome.error_code == "stalled", why
    assert harness.workspaces.calls[-1] == "after_run"


def test_cancellation_stops_agent_and_runs_after_run(harness: Harness) -> None:
    release = threading.Event()
    with MockServer(lambda n, body: (release.wait(30), responses_text("late"))[1]) as mock:
        harness.dirs.write_codex_config(mock.port)

        async def scenario() -> None:
            task = asyncio.create_task(
                run_worker_attempt("run-1", ISSUE, None, harness.deps(states()))
            )
            while not mock.requests:
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        try:
            asyncio.run(asyncio.wait_for(scenario(), 60))
        finally:
            release.set()
    assert harness.workspaces.calls[-1] == "after_run"
    assert harness.events[-1].outcome and harness.events[-1].outcome.status == "cancelled"
    session = harness.sessions[0]
    assert isinstance(session, CodexSession)
    pid = session.pid
    assert pid is not None
    assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def _is_zombie(pid: int | None) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True


def test_prompt_hash_is_of_the_exact_prompt(harness: Harness) -> None:
    with MockServer(lambda n, body: responses_text("ok")) as mock:
        harness.dirs.write_codex_config(mock.port)
        harness.run(harness.deps(states("Done")))
        sent = mock.requests[0]["body"]["input"]
    texts = [
        c["text"]
        for item in sent
        if isinstance(item, dict) and item.get("role") == "user"
        for c in item.get("content", [])
        if isinstance(c, dict) and "text" in c
    ]
    digest = harness.audits[0]["sha256"]
    assert any(hashlib.sha256(t.encode()).hexdigest() == digest for t in texts)


def test_preview_is_withheld_when_the_tracker_cannot_scrub_it(harness: Harness) -> None:
    """A preview scrubbed of only the launcher's own secrets is not kept (0552)."""

    async def down(text: str) -> str:
        raise SymphonyError("tracker down", code="tracker_unavailable")

    async def scrub(text: str) -> str:
        return text.replace("trk-secret-123456", "[REDACTED:secret]")

    prompt = "pre trk-secret-123456 fwd-secret-654321 post"
    results = []
    for scrubber in (down, scrub):
        deps = dataclasses.replace(
            harness.deps(states()),
            redactor=Redactor(["fwd-secret-654321"]),
            scrub=scrubber,
            preview_chars=30,
        )
        attempt = WorkerAttempt("run-1", ISSUE, None, deps)
        results.append(asyncio.run(attempt._preview_fields(prompt)))
    withheld, kept = results
    assert withheld["preview"] == "" and withheld["preview_withheld"] is True
    assert withheld["chars"] == len(prompt) and len(withheld["sha256"]) == 64
    assert kept["preview"] == "pre [REDACTED:secret] [REDACTE"
    assert "preview_withheld" not in kept


def test_agent_messages_keep_no_preview_when_the_tracker_cannot_scrub_them(
    harness: Harness,
) -> None:
    """The agent's words follow the prompt rule (0552, 0956): no tracker scrub, no preview;
    and every record is written before the attempt reports run_finished."""

    async def down(text: str) -> str:
        raise SymphonyError("tracker down", code="tracker_unavailable")

    said = "the tracker key is trk-secret-123456"
    with MockServer(lambda n, body: responses_text(said, rid=f"r{n}")) as mock:
        harness.dirs.write_codex_config(mock.port)
        audited_at_finish: list[int] = []

        def emit(event: RunEvent) -> None:
            if event.event == "run_finished":
                audited_at_finish.append(len(harness.audits))

        deps = dataclasses.replace(harness.deps(states("Done")), scrub=down, emit=emit)
        outcome = harness.run(deps)
    assert outcome == RunOutcome("succeeded")
    assert audited_at_finish == [len(harness.audits)]  # nothing was written after the end
    (message,) = [a for a in harness.audits if a["type"] == "agent_message"]
    assert message["preview_withheld"] is True and "preview" not in message
    assert message["chars"] == len(said)
    assert "trk-secret" not in str(harness.audits)
