"""Operator controls (seed 001): pause, resume, stop and release, each audited with the uid."""

from __future__ import annotations

from collections.abc import Iterable

from symphonyd.core import audit_events as ae
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue
from symphonyd.dispatcher.engine import Engine
from symphonyd.dispatcher.state import (
    iso,
)
from symphonyd.dispatcher.store import OperatorPause

MAX_REASON_CHARS = 500


class ControlError(SymphonyError):
    code = "control_error"


class Controls(Engine):
    """What symphonyctl and the dashboard may change."""

    async def pause(self, reason: str, uid: int | None) -> str:
        reason = clean_reason(reason)
        async with self.lock:
            now = iso(self.clock.now())
            self.persisted.operator_pause = OperatorPause(reason, now, uid)
            self._persist()
            await self._audit(ae.operator_action(ae.PAUSE, operator_uid=uid, reason=reason))
        self._changed()
        return f"dispatch paused by uid {uid}: {reason}; runs in flight continue"

    async def resume(self, uid: int | None) -> str:
        async with self.lock:
            had = self.persisted.operator_pause is not None
            had |= self.pauses.clear("state_unreadable")
            self.persisted.operator_pause = None
            self._persist()
            if had:
                await self._audit(ae.operator_action(ae.RESUME, operator_uid=uid))
            remaining = [r.code for r in self.pauses.rows()]
        self._changed()
        message = "operator pause lifted" if had else "dispatch was not paused by an operator"
        if remaining:
            message += "; still paused automatically: " + ", ".join(remaining)
        return message

    def _find_issue_id(self, identifier: str, sources: Iterable[tuple[str, str]]) -> str | None:
        for issue_id, ident in sources:
            if ident == identifier:
                return issue_id
        return None

    async def stop(self, identifier: str, uid: int | None) -> str:
        async with self.lock:
            sources = [(k, e.issue.identifier) for k, e in self.running.items()]
            sources += [(k, r.identifier) for k, r in self.retries.items()]
            issue_id = self._find_issue_id(identifier, sources)
            if issue_id is None:
                raise ControlError(
                    f"{identifier} is neither running nor waiting for a retry",
                    code="issue_not_found",
                )
            entry = self.running.get(issue_id)
            retry = self.retries.pop(issue_id, None)
            self.claimed.discard(issue_id)
            if entry is not None:
                await self._terminate(entry, "operator", cleanup=False, release=True)
                issue = entry.issue
            else:
                assert retry is not None
                issue = Issue(issue_id, retry.identifier, retry.identifier, "", True)
            self.holds.place(issue, "stopped", "stopped by operator", self.clock.now(), uid)
            self._persist()
            await self._audit(
                ae.operator_action(
                    ae.STOP, operator_uid=uid, reason=f"stop {identifier}", issue_id=issue_id
                )
            )
        self._changed()
        return f"{identifier} stopped; it stays out of dispatch until it changes or is released"

    async def release(self, identifier: str, uid: int | None) -> str:
        async with self.lock:
            hold = self.holds.find(identifier)
            if hold is None:
                raise ControlError(f"{identifier} is not held", code="not_held")
            self.holds.drop(hold.issue_id)
            if hold.kind == "budget":
                self.ledger.reset_issue(hold.issue_id)
            self._persist()
            await self._audit_release(
                hold.issue_id, f"release {identifier} from its {hold.kind} hold", uid
            )
        self._changed()
        return f"{identifier} released from its {hold.kind} hold"

    async def forget_tokens(self, issue_ids: list[str]) -> list[str]:
        """Drop the per-issue token totals of finished issues (prune); the ids dropped.

        Re-checked under the lock: an issue that started a run or got a hold since prune
        looked keeps its total."""
        async with self.lock:
            dropped = [
                i
                for i in issue_ids
                if i not in self.running and i not in self.claimed and self.holds.get(i) is None
            ]
            for issue_id in dropped:
                self.ledger.reset_issue(issue_id)
            if dropped:
                self.ledger.dirty = False
                self._persist()
        return dropped


def clean_reason(reason: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in reason).strip()
    if not cleaned:
        raise ControlError("a pause needs a reason", code="invalid_params")
    return cleaned[:MAX_REASON_CHARS]
