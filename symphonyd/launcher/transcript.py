"""The agent's messages and commands as audit records: bounded, redacted, in order.

Each ``agent_message`` or ``command`` record keeps a preview made the way a prompt preview is
(docs/design/0552): the whole text scrubbed of the launcher's forwarded secrets, then by the
tracker daemon (``tracker.redact``) of the secrets only it holds, then cut to
``audit.prompt_preview_chars``; no tracker answer, no preview. A run keeps at most
``audit.transcript_records`` of them; the rest are counted in one ``transcript_summary``
record when the agent stops, so a chatty agent cannot flood the log (docs/design/0956).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from symphonyd.core import audit_events as ev
from symphonyd.core.redact import Redactor
from symphonyd.launcher.agents.session import short, utc_now

log = logging.getLogger(__name__)
SCRUB_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 60.0  # bound on flushing queued records when the agent stops

Audit = Callable[[str, dict[str, Any]], None]
Scrub = Callable[[str], Awaitable[str]]


async def scrubbed(
    text: str, redactor: Redactor, scrub: Scrub | None, what: str
) -> tuple[str, bool]:
    """``text`` scrubbed whole by both redactors; ("", True) when the tracker's failed."""
    redacted = redactor.text(text)
    if scrub is None:
        return redacted, False
    try:
        return await asyncio.wait_for(scrub(redacted), SCRUB_TIMEOUT_S), False
    except Exception as exc:
        log.warning("%s preview withheld: %s", what, short(str(exc), 200))
        return "", True


class TranscriptRecorder:
    """Queues the session's transcript items and writes them one at a time, in order."""

    def __init__(
        self,
        audit: Audit,
        *,
        redactor: Redactor,
        scrub: Scrub | None,
        preview_chars: int,
        max_records: int,
    ) -> None:
        self._audit = audit
        self._redactor = redactor
        self._scrub = scrub
        self._chars = max(preview_chars, 0)
        self._max = max(max_records, 0)
        self._kept = 0
        self._dropped: Counter[str] = Counter()
        self._queue: asyncio.Queue[tuple[str, str, str] | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._writer())

    def offer(self, kind: str, text: str) -> None:
        if kind not in (ev.AGENT_MESSAGE, ev.COMMAND):
            return
        if self._kept >= self._max:
            self._dropped[kind] += 1
            return
        self._kept += 1
        self._queue.put_nowait((kind, text, utc_now()))

    async def close(self) -> None:
        """Write what is queued, then the summary of what was not kept."""
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), DRAIN_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            raise
        finally:
            if self._dropped:
                self._send(
                    ev.TRANSCRIPT_SUMMARY,
                    {"kept": self._kept, "dropped": dict(self._dropped), "at": utc_now()},
                )

    async def _writer(self) -> None:
        while (entry := await self._queue.get()) is not None:
            kind, text, at = entry
            payload: dict[str, Any] = {"at": at, "chars": len(text)}
            if self._chars:
                preview, withheld = await scrubbed(text, self._redactor, self._scrub, kind)
                if withheld:
                    payload["preview_withheld"] = True
                else:
                    payload["preview"] = preview[: self._chars]
                    payload["preview_truncated"] = len(preview) > self._chars
            self._send(kind, payload)

    def _send(self, kind: str, payload: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # delivery problems are the forwarder's to report
            self._audit(kind, payload)
