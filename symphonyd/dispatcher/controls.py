"""Operator controls (seed 001): pause, resume, stop and release, each audited with the uid.

``stop`` and ``release`` take an issue's identifier (``MT-7``) or its tracker id. ``stop``
ends a run, drops a waiting retry, or holds an issue the tracker lists as active before it
was ever dispatched (0751).
"""

from __future__ import annotations

from symphonyd.core import audit_events as ae
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue
from symphonyd.dispatcher.engine import Engine, brief_error, log
from symphonyd.dispatcher.state import (
    iso,
)
from symphonyd.dispatcher.store import OperatorPause
from symphonyd.runtime.logging import log_event

MAX_REASON_CHARS = 500


class ControlError(SymphonyError):
    code = "control_error"


class Controls:
    """What symphonyctl and the dashboard may change.

    The caller (the orchestrator) holds the lock around every public method; ``stop`` is
    split in two (:meth:`stop_claimed`, then :meth:`find_candidate` without the lock and
    :meth:`hold_waiting`) so the tracker's round trip never holds it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def pause(self, reason: str, uid: int | None) -> str:
        eng = self.engine
        reason = clean_reason(reason)
        now = iso(eng.clock.now())
        eng.persisted.operator_pause = OperatorPause(reason, now, uid)
        eng.persist()
        log_event(log, "pause", outcome="raised", reason="operator", detail=reason,
                  operator_uid=uid)  # fmt: skip
        await eng.append_audit(ae.operator_action(ae.PAUSE, operator_uid=uid, reason=reason))
        return f"dispatch paused by uid {uid}: {reason}; runs in flight continue"

    async def resume(self, uid: int | None) -> str:
        eng = self.engine
        had = eng.persisted.operator_pause is not None
        had |= eng.pauses.clear("state_unreadable")
        eng.persisted.operator_pause = None
        eng.persist()
        remaining = [r.code for r in eng.pauses.rows()]
        if had:
            log_event(log, "resume", outcome="lifted", reason="operator", operator_uid=uid,
                      still_paused=",".join(remaining) or None)  # fmt: skip
            await eng.append_audit(ae.operator_action(ae.RESUME, operator_uid=uid))
        message = "operator pause lifted" if had else "dispatch was not paused by an operator"
        if remaining:
            message += "; still paused automatically: " + ", ".join(remaining)
        return message

    def _claimed_issue(self, ref: str) -> Issue | None:
        """The running or retry-queued issue ``ref`` names (identifier or tracker id)."""
        eng = self.engine
        for issue_id, entry in eng.running.items():
            if ref in (issue_id, entry.issue.identifier):
                return entry.issue
        for issue_id, retry in eng.retries.items():
            if ref in (issue_id, retry.identifier):
                return Issue(issue_id, retry.identifier, retry.identifier, "", True,
                             url=retry.issue_url)  # fmt: skip
        return None

    async def stop_claimed(self, ref: str, uid: int | None) -> str | None:
        """End the run or retry of the issue ``ref`` names; None when it is not claimed."""
        eng = self.engine
        held = eng.holds.find(ref)
        if held is not None:
            return f"{held.identifier} is already held ({held.kind}): {held.reason}"
        issue = self._claimed_issue(ref)
        if issue is None:
            return None
        entry = eng.running.get(issue.id)
        eng.retries.pop(issue.id, None)
        eng.claimed.discard(issue.id)
        if entry is not None:
            await eng.terminate(entry, "operator", cleanup=False, release=True)
        await self._place_stop(issue, "stopped by operator", uid, ran=entry is not None)
        return (
            f"{issue.identifier} stopped; it stays out of dispatch until it changes or is "
            "released"
        )

    async def find_candidate(self, ref: str) -> Issue:
        """The issue among the tracker's active ones whose identifier or id is ``ref``."""
        eng = self.engine
        try:
            issues = await eng.tracker.fetch_by_states(list(eng.settings.active_states_raw))
        except Exception as exc:
            raise ControlError(
                f"cannot look {ref} up: the tracker did not answer ({brief_error(exc)})",
                code="tracker_unavailable",
            ) from exc
        for issue in issues:
            if ref in (issue.identifier, issue.id):
                return issue
        raise ControlError(
            f"{ref} is not running, not waiting for a retry, and not among the tracker's "
            "active issues",
            code="issue_not_found",
        )

    async def hold_waiting(self, issue: Issue, uid: int | None) -> str:
        """Hold an issue the tracker lists as active before its first dispatch (0751)."""
        eng = self.engine
        held = eng.holds.get(issue.id)
        if held is not None:
            return f"{held.identifier} is already held ({held.kind}): {held.reason}"
        await self._place_stop(issue, "held by operator before dispatch", uid, ran=False)
        return (
            f"{issue.identifier} held before dispatch; it stays out of dispatch until it "
            "changes or is released"
        )

    async def _place_stop(self, issue: Issue, reason: str, uid: int | None, *, ran: bool) -> None:
        eng = self.engine
        eng.holds.place(issue, "stopped", reason, eng.clock.now(), uid)
        eng.persist()
        log_event(log, "hold", outcome="placed", kind="stopped", issue_id=issue.id,
                  issue_identifier=issue.identifier, reason=reason, operator_uid=uid,
                  run_stopped=ran)  # fmt: skip
        await eng.append_audit(
            ae.operator_action(
                ae.STOP, operator_uid=uid, reason=f"stop {issue.identifier}", issue_id=issue.id
            )
        )

    async def release(self, identifier: str, uid: int | None) -> str:
        eng = self.engine
        hold = eng.holds.find(identifier)
        if hold is None:
            raise ControlError(f"{identifier} is not held", code="not_held")
        eng.holds.drop(hold.issue_id)
        if hold.kind == "budget":
            eng.ledger.reset_issue(hold.issue_id)
        eng.persist()
        log_event(log, "hold", outcome="lifted", kind=hold.kind, issue_id=hold.issue_id,
                  issue_identifier=hold.identifier, by="operator",
                  operator_uid=uid)  # fmt: skip
        await eng.audit_release(
            hold.issue_id, f"release {hold.identifier} from its {hold.kind} hold", uid
        )
        return f"{hold.identifier} released from its {hold.kind} hold"

    async def drain(self, name: str, drained: bool, uid: int | None) -> str:
        """Take a host out of (or back into) dispatch; its runs in flight continue. Durable,
        so a restart does not send runs to a host being emptied for maintenance; audited,
        like every operator control, when it changes anything."""
        eng = self.engine
        host = eng.hosts.hosts.get(name)
        if host is None:
            known = ", ".join(eng.hosts.hosts)
            raise ControlError(f"no host {name!r} (hosts: {known})", code="host_not_found")
        was, host.drained = host.drained, drained
        names = [n for n in eng.persisted.drained_hosts if n != name]
        eng.persisted.drained_hosts = [*names, name] if drained else names
        eng.persist()
        word = "drained" if drained else "undrained"
        if was != drained:
            running = eng.hosts.load[name]
            log_event(log, "host_drain", outcome=word, host=name, operator_uid=uid,
                      running=running)  # fmt: skip
            await eng.append_audit(
                ae.host_drain(name, drained=drained, operator_uid=uid, running=running)
            )
        if not drained:
            return f"{name} takes runs again"
        return f"{name} drained: no new runs; {eng.hosts.load[name]} in flight continue"

    async def forget_tokens(self, issue_ids: list[str]) -> list[str]:
        """Drop the per-issue token totals of finished issues (prune); the ids dropped.

        Re-checked under the lock: an issue that started a run or got a hold since prune
        looked keeps its total."""
        eng = self.engine
        dropped = [
            i
            for i in issue_ids
            if i not in eng.running and i not in eng.claimed and eng.holds.get(i) is None
        ]
        for issue_id in dropped:
            eng.ledger.reset_issue(issue_id)
        if dropped:
            eng.ledger.dirty = False
            eng.persist()
        return dropped


def clean_reason(reason: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in reason).strip()
    if not cleaned:
        raise ControlError("a pause needs a reason", code="invalid_params")
    return cleaned[:MAX_REASON_CHARS]
