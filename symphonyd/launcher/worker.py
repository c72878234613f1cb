"""One worker attempt (SPEC 16.5): workspace, hooks, agent session, turn loop, events out.

The collaborators are small protocols so the attempt can be driven by the real workspace
manager, template renderer and agent runtimes, or by a test. Every failure becomes a
``RunOutcome`` with a stable ``error_code``; nothing escapes except cancellation, which still
stops the agent and runs ``after_run`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from symphonyd.core.api.launcher import RunEvent, RunOutcome
from symphonyd.core.config_extensions import TRANSCRIPT_RECORDS
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue
from symphonyd.core.prompt_guard import (
    PREVIEW_CHARS,
    audit_fields_of_redacted,
    continuation_prompt,
    guarded_prompt,
)
from symphonyd.core.redact import NO_SECRETS, Redactor
from symphonyd.launcher.agents.session import AgentEvent, AgentSession, EventSink, short, utc_now
from symphonyd.launcher.transcript import TranscriptRecorder, scrubbed

log = logging.getLogger(__name__)
T = TypeVar("T")


class WorkspaceLike(Protocol):
    @property
    def path(self) -> Path: ...


class WorkspaceManagerLike(Protocol):
    """What symphonyd.launcher.workspace.WorkspaceManager offers (sync or async methods)."""

    def prepare(self, issue: Issue) -> Any: ...
    def before_run(self, ws: Any, issue: Issue) -> Any: ...
    def after_run(self, ws: Any, issue: Issue) -> Any: ...


@dataclass
class WorkerDeps:
    workspaces: WorkspaceManagerLike
    render: Callable[[Issue, int | None], str]  # the workflow template (SPEC 12)
    open_session: Callable[[Path, EventSink], AgentSession]  # runtime chosen by the caller
    refresh_issue: Callable[[str], Awaitable[Issue | None]]  # tracker.fetch_by_ids, one id
    is_active: Callable[[Issue], bool]  # active state and still routable
    emit: Callable[[RunEvent], None]
    max_turns: int = 20
    stall_timeout: float = 300.0  # seconds without agent output; <= 0 disables
    audit: Callable[[str, dict[str, Any]], None] | None = None
    redactor: Redactor = NO_SECRETS  # secrets the launcher holds (forwarded agent env)
    # Secrets held elsewhere: the tracker daemon scrubs its own (tracker.redact). Both run on
    # the whole prompt before the preview is cut; if this fails, no preview is kept.
    scrub: Callable[[str], Awaitable[str]] | None = None
    preview_chars: int = PREVIEW_CHARS  # audit.prompt_preview_chars
    transcript_records: int = TRANSCRIPT_RECORDS  # audit.transcript_records
    continuation: Callable[[Issue, int, int], str] = field(default=continuation_prompt)


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


class WorkerAttempt:
    def __init__(self, run_id: str, issue: Issue, attempt: int | None, deps: WorkerDeps) -> None:
        self.run_id = run_id
        self.issue = issue
        self.attempt = attempt
        self.deps = deps
        self.session: AgentSession | None = None
        self.turns = 0
        self.agent_seconds = 0.0  # the agent's own time: start to stop, hooks excluded
        self.transcript: TranscriptRecorder | None = None
        # The first prompt's audit preview, begun before the agent starts: its scrub (a round
        # trip to the tracker daemon) runs during the spawn and handshake, not after them.
        self._first_preview: asyncio.Task[dict[str, Any]] | None = None

    # ------------------------------------------------------------------ events

    def _emit(self, event: AgentEvent) -> None:
        if event.item is not None and self.transcript is not None:
            self.transcript.offer(*event.item)
        with contextlib.suppress(Exception):
            self.deps.emit(event.to_run_event(self.run_id, self.issue.id))

    def _finish(self, outcome: RunOutcome) -> RunOutcome:
        tokens = self.session.tokens if self.session else None
        pid = self.session.pid if self.session else None
        final = RunEvent(
            self.run_id,
            self.issue.id,
            "run_finished",
            utc_now(),
            turn_count=self.turns,
            tokens=tokens,
            pid=pid,
            message=outcome.error,
            outcome=outcome,
            agent_seconds=round(self.agent_seconds, 3),
        )
        with contextlib.suppress(Exception):
            self.deps.emit(final)
        return outcome

    async def _audit_prompt(self, prompt: str, turn: int) -> None:
        deps = self.deps
        if deps.audit is None:
            return
        payload: dict[str, Any] = {"run_id": self.run_id, "turn": turn, "at": utc_now()}
        early, self._first_preview = self._first_preview, None
        payload.update(await (early if early is not None else self._preview_fields(prompt)))
        with contextlib.suppress(Exception):
            deps.audit("prompt_sent", payload)

    async def _preview_fields(self, prompt: str) -> dict[str, Any]:
        """Hash and preview; the preview is redacted whole, with every configured secret.

        Without the tracker's scrub (it failed or timed out) the preview is withheld rather
        than kept with only the secrets the launcher knows.
        """
        deps = self.deps
        chars = deps.preview_chars if deps.preview_chars > 0 else 0
        redacted, withheld = "", False
        if chars:
            redacted, withheld = await scrubbed(prompt, deps.redactor, deps.scrub, "prompt")
        fields: dict[str, Any] = dict(audit_fields_of_redacted(prompt, redacted, chars))
        fields["chars"] = len(prompt)
        if withheld:
            fields["preview_withheld"] = True
        return fields

    # ------------------------------------------------------------------ attempt

    async def run(self) -> RunOutcome:
        deps = self.deps
        try:
            ws = await _maybe_await(deps.workspaces.prepare(self.issue))
        except Exception as exc:
            return self._finish(_failure(exc, "workspace_error"))
        try:
            await _maybe_await(deps.workspaces.before_run(ws, self.issue))
        except Exception as exc:
            return self._finish(_failure(exc, "before_run_failed"))
        try:
            outcome = await self._agent(Path(ws.path))
        except asyncio.CancelledError:
            await self._after_run_then_finish(
                ws, RunOutcome("cancelled", "turn_cancelled", "run stopped")
            )
            raise
        await self._after_run_then_finish(ws, outcome)
        return outcome

    async def _after_run_then_finish(self, ws: Any, outcome: RunOutcome) -> None:
        """after_run, then run_finished even when a stop cancels us during after_run.

        A stop often lands just after the agent's last turn (the dispatcher sees the hand-off
        state first): without ``finally`` the attempt ended with no run_finished event, so
        the dispatcher never acknowledged it and its audit record was missing.
        """
        try:
            await self._after_run(ws)
        finally:
            self._finish(outcome)

    async def _after_run(self, ws: Any) -> None:
        # Best effort (SPEC 9.4): a failing after_run is logged, never changes the outcome.
        try:
            await asyncio.shield(_maybe_await(self.deps.workspaces.after_run(ws, self.issue)))
        except Exception as exc:
            log.warning("after_run failed for %s: %s", self.issue.identifier, exc)

    async def _agent(self, workspace: Path) -> RunOutcome:
        deps = self.deps
        try:
            first_prompt = guarded_prompt(deps.render(self.issue, self.attempt))
        except Exception as exc:
            return _failure(exc, "template_render_error")
        try:
            session = deps.open_session(workspace, self._emit)
        except Exception as exc:
            return _failure(exc, "startup_failed")
        self.session = session
        if deps.audit is not None:
            self.transcript = TranscriptRecorder(
                deps.audit,
                redactor=deps.redactor,
                scrub=deps.scrub,
                preview_chars=deps.preview_chars,
                max_records=deps.transcript_records,
            )
        if deps.audit is not None:
            self._first_preview = asyncio.ensure_future(self._preview_fields(first_prompt))
            self._first_preview.add_done_callback(lambda t: t.cancelled() or t.exception())
        started = time.monotonic()
        try:
            try:
                await session.start()
            except Exception as exc:
                return _failure(exc, "startup_failed")
            return await self._turns(session, first_prompt)
        finally:
            try:
                with contextlib.suppress(Exception):
                    await asyncio.shield(session.stop())
            finally:
                if self._first_preview is not None:  # the agent never got its first turn
                    self._first_preview.cancel()
                    self._first_preview = None
                self.agent_seconds += time.monotonic() - started
                if self.transcript is not None:
                    with contextlib.suppress(Exception):
                        await self.transcript.close()

    async def _turns(self, session: AgentSession, first_prompt: str) -> RunOutcome:
        deps = self.deps
        issue = self.issue
        title = short(f"{issue.identifier}: {issue.title}", 120)
        turn = 1
        while True:
            if turn == 1:
                prompt = first_prompt
            else:
                try:
                    prompt = deps.continuation(issue, turn, deps.max_turns)
                except Exception as exc:
                    return _failure(exc, "template_render_error")
            await self._audit_prompt(prompt, turn)
            self.turns = turn
            result = await self._watched_turn(session, prompt, title)
            if result is not None:
                return result
            try:
                refreshed = await deps.refresh_issue(issue.id)
            except Exception as exc:
                return _failure(exc, "issue_state_refresh_error")
            if refreshed is None or not deps.is_active(refreshed):
                return RunOutcome("succeeded")
            issue = self.issue = refreshed
            if turn >= deps.max_turns:
                return RunOutcome("succeeded")
            turn += 1

    async def _watched_turn(
        self, session: AgentSession, prompt: str, title: str
    ) -> RunOutcome | None:
        """Run one turn under stall watch; None when it completed normally."""
        task = asyncio.create_task(session.run_turn(prompt, title=title))
        stalled = False
        stall = self.deps.stall_timeout
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=max(min(stall, 5.0), 0.2) if stall > 0 else None)
                if not task.done() and session.is_stalled(stall):
                    stalled = True
                    await session.interrupt()
                    await asyncio.wait({task}, timeout=10)
                    break
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(session.interrupt())
            task.cancel()
            raise
        if stalled:
            task.cancel()
            return RunOutcome("stalled", "stalled", f"no agent output for {stall:g}s")
        result = task.result()
        return None if result.ok else result.outcome()


def _failure(exc: BaseException, default_code: str) -> RunOutcome:
    if isinstance(exc, SymphonyError):
        return RunOutcome("failed", exc.error_code, short(exc.message, 300))
    return RunOutcome("failed", default_code, short(f"{exc.__class__.__name__}: {exc}", 300))


async def run_worker_attempt(
    run_id: str, issue: Issue, attempt: int | None, deps: WorkerDeps
) -> RunOutcome:
    return await WorkerAttempt(run_id, issue, attempt, deps).run()
