"""The tracker daemon's request handlers, independent of the socket they are served on.

Reads are fetched from the provider on request, not served from a cache: the dispatcher asks
once per tick (``polling.interval_ms``) and reconciliation needs current snapshots, so a
cache would only add staleness (docs/design/0400-tracker-daemon.md). The tracker config is
re-read from WORKFLOW.md before each request; a change rebuilds the adapter, a bad edit keeps
the previous one serving (and is reported: docs/design/0155-one-last-good-workflow.md). No
reply leaves this class if it contains the credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from symphonyd import __version__
from symphonyd.core.api.shared import Empty, Health
from symphonyd.core.api.tracker import (
    FetchByIds,
    FetchByStates,
    IssueList,
    RedactedText,
    RedactText,
    ToolCall,
    ToolResult,
    ToolSpecList,
    TrackerProfile,
)
from symphonyd.core.codec import encode
from symphonyd.core.errors import SymphonyError
from symphonyd.core.redact import Redactor
from symphonyd.tracker import tools
from symphonyd.tracker.adapter import TrackerAdapter
from symphonyd.tracker.credentials import UNIT_CREDENTIAL_NAME, read_unit_credential
from symphonyd.tracker.registry import build_adapter, settings_for

log = logging.getLogger(__name__)
T = TypeVar("T")
OLD_ADAPTER_GRACE_S = 60.0


@dataclass(frozen=True)
class TrackerSource:
    """The tracker section of the current workflow, as the daemon's config source yields it."""

    kind: str | None
    provider: Mapping[str, Any]
    active_states: tuple[str, ...] | None
    terminal_states: tuple[str, ...] | None
    base_dir: Path | None = None
    workflow_sha256: str | None = None  # the WORKFLOW.md version this section came from
    # Set while the file on disk holds an edit that was refused; this source is then the
    # last good one, still in force.
    rejected: SymphonyError | None = None
    # Called once the service builds an adapter from this source (keeps a copy on disk).
    adopted: Callable[[], None] | None = field(default=None, compare=False, repr=False)


# Returns the current tracker section or raises SymphonyError (e.g. workflow_parse_error).
ConfigSource = Callable[[], TrackerSource]


def fingerprint(source: TrackerSource) -> str:
    doc = {
        "kind": source.kind,
        "provider": source.provider,
        "active": source.active_states,
        "terminal": source.terminal_states,
        "base": str(source.base_dir),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


class TrackerService:
    def __init__(
        self,
        source: ConfigSource,
        env: Mapping[str, str],
        *,
        audit: tools.AuditHook = tools.log_only_audit,
        transport: httpx.AsyncBaseTransport | None = None,
        unit_credential: str = UNIT_CREDENTIAL_NAME,
    ) -> None:
        self._source = source
        self._env = env
        self._audit = audit
        self._transport = transport
        self._unit_credential = unit_credential
        # The credential systemd loaded for this unit is a configured secret even when the
        # current adapter needs none (the local tracker): it is scrubbed all the same.
        self._unit_secret = read_unit_credential(env, unit_credential)
        self._redactor = Redactor(self._unit_secret)
        self._adapter: TrackerAdapter | None = None
        self._fingerprint: str | None = None
        # What is wrong with the workflow on disk: unusable (no adapter) or refused (the
        # adapter of the last good version keeps serving).
        self._error: SymphonyError | None = None
        # The newest version whose adapter could not be built, and why (not retried).
        self._refused: tuple[str, SymphonyError] | None = None
        self._last_source: TrackerSource | None = None
        self._retired: set[asyncio.Task[None]] = set()

    @property
    def adapter(self) -> TrackerAdapter | None:
        """The adapter built from the current config (None while the config is unusable)."""
        return self._adapter

    # ------------------------------------------------------------------ config

    def refresh(self) -> None:
        """Rebuild the adapter when the tracker config changed; keep the old one on errors.

        A refused edit never takes the adapter away: the last good one keeps serving and the
        refusal is logged and reported (health, profile) until the file is fixed.
        """
        try:
            source = self._source()
        except SymphonyError as exc:
            self._set_error(exc)
            return
        except Exception as exc:
            # A parser bug on a hostile WORKFLOW.md must not take the daemon down.
            self._set_error(
                SymphonyError(
                    f"cannot load the workflow: {type(exc).__name__}", code="workflow_parse_error"
                )
            )
            return
        fp = fingerprint(source)
        if fp == self._fingerprint and self._adapter is not None:
            self._set_error(source.rejected)  # None once the file is good again
            return
        if self._refused is not None and fp == self._refused[0]:
            # This version's adapter already failed; an edit refused since is the newer news.
            self._set_error(source.rejected or self._refused[1])
            return
        try:
            settings = settings_for(
                source.kind,
                source.provider,
                self._env,
                active_states=source.active_states,
                terminal_states=source.terminal_states,
            )
            adapter = build_adapter(
                settings, self._env, base_dir=source.base_dir, transport=self._transport
            )
        except SymphonyError as exc:
            self._refused = (fp, exc)
            if self._adapter is None:
                self._last_source = source
            self._set_error(source.rejected or exc)
            return
        adapter.audit = self._audit
        self._redactor = Redactor([*(s.reveal() for s in adapter.secrets), *self._unit_secret])
        self._retire(self._adapter)
        self._adapter, self._fingerprint, self._last_source = adapter, fp, source
        self._refused = None
        self._keep_copy(source)
        log.info(
            "tracker adapter ready: kind=%s workflow=%s",
            adapter.kind,
            (source.workflow_sha256 or "?")[:12],
        )
        self._set_error(source.rejected)

    @staticmethod
    def _keep_copy(source: TrackerSource) -> None:
        if source.adopted is None:
            return
        try:
            source.adopted()
        except OSError as exc:
            # Serving goes on; only a restart during a bad edit loses its fallback.
            log.warning("could not save a copy of the workflow in force: %s", exc)

    @property
    def workflow_sha256(self) -> str | None:
        """SHA-256 of the WORKFLOW.md version the adapter in force was built from."""
        return self._last_source.workflow_sha256 if self._adapter and self._last_source else None

    def _set_error(self, exc: SymphonyError | None) -> None:
        if exc is None:
            if self._error is not None:
                log.info("tracker config usable again: serving workflow %s", self._sha_text())
            self._error = None
            return
        if self._error is None or self._error.as_dict() != exc.as_dict():
            message = self._redact(str(exc))
            if self._adapter is not None:
                log.warning(
                    "WORKFLOW.md edit refused; the tracker keeps serving the last good "
                    "workflow %s: %s",
                    self._sha_text(),
                    message,
                )
            else:
                log.error("tracker config unusable: %s", message)
        self._error = exc

    def _sha_text(self) -> str:
        return (self.workflow_sha256 or "?")[:12]

    def _retire(self, adapter: TrackerAdapter | None) -> None:
        # In-flight requests may still use it; close it once they have had time to finish.
        if adapter is None:
            return

        async def later() -> None:
            await asyncio.sleep(OLD_ADAPTER_GRACE_S)
            await adapter.aclose()

        task = asyncio.get_running_loop().create_task(later())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def _current(self) -> TrackerAdapter:
        self.refresh()
        if self._adapter is None:
            error = self._error or SymphonyError(
                "tracker not configured", code="invalid_tracker_config"
            )
            raise SymphonyError(self._redact(error.message), code=error.error_code)
        return self._adapter

    async def close(self) -> None:
        for task in list(self._retired):
            task.cancel()
        if self._adapter is not None:
            await self._adapter.aclose()

    # ------------------------------------------------------------------ handlers

    async def fetch_by_states(self, params: FetchByStates) -> IssueList:
        adapter = self._current()
        issues = await self._call(adapter.fetch_issues_by_states(params.states))
        clean = [i for i in issues if not self._holds_secret(i)]
        if len(clean) != len(issues):
            # Like a malformed record: omitted from a state list, never dispatched.
            log.error(
                "omitted %d issue(s) whose tracker data contains the credential",
                len(issues) - len(clean),
            )
        return self._guarded(IssueList(clean))

    async def fetch_by_ids(self, params: FetchByIds) -> IssueList:
        adapter = self._current()
        issues = await self._call(adapter.fetch_issues_by_ids(params.ids))
        if any(self._holds_secret(i) for i in issues):
            log.error("refused a refresh: a requested issue's data contains the credential")
            raise SymphonyError(
                "a requested issue's tracker data contains the tracker "
                "credential; refusing to pass it on",
                code="tracker_response",
            )
        return self._guarded(IssueList(issues))

    async def tool_specs(self, params: Empty) -> ToolSpecList:
        adapter = self._current()
        return self._guarded(ToolSpecList(adapter.tool_specs(), self._fingerprint))

    async def tool_call(self, params: ToolCall) -> ToolResult:
        try:
            adapter = self._current()
        except SymphonyError as exc:
            return tools.failure(exc.error_code, exc.message)
        if params.tracker_fingerprint not in (None, self._fingerprint):
            return tools.failure(
                "tracker_config_changed",
                "the tracker configuration changed "
                "since this session started; its tools are no longer valid",
            )
        result = await adapter.execute_tool(
            params.tool, params.arguments, params.issue, params.session_id
        )
        try:
            return self._guarded(result)
        except SymphonyError as exc:
            return tools.failure(exc.error_code, exc.message)

    async def profile(self, params: Empty) -> TrackerProfile:
        self.refresh()
        src, adapter = self._last_source, self._adapter
        kind = adapter.kind if adapter else (src.kind if src else None)
        states = (
            (adapter.settings.active_states, adapter.settings.terminal_states)
            if adapter
            else ((), ())
        )
        error = None
        if self._error is not None:
            error = {"code": self._error.error_code, "message": self._redact(self._error.message)}
        return TrackerProfile(
            kind=kind,
            active_states=list(states[0]),
            terminal_states=list(states[1]),
            secret_env_names=adapter.secret_environment_names() if adapter else [],
            tracker_fingerprint=self._fingerprint,
            config_error=error,
            workflow_sha256=self.workflow_sha256,
        )

    async def health(self, params: Empty) -> Health:
        """ok while an adapter serves; a refused edit shows as ``workflow_refused`` beside it."""
        self.refresh()
        detail: dict[str, Any] = {
            "kind": self._adapter.kind if self._adapter else None,
            "workflow_sha256": self.workflow_sha256,
        }
        if self._error is not None:
            detail["error"] = self._error.error_code
            detail["error_message"] = self._redact(self._error.message)
            if self._adapter is not None:
                detail["workflow_refused"] = True  # serving the last good version
        return Health("tracker", __version__, self._adapter is not None, detail)

    # ------------------------------------------------------------------ secrets

    async def _call(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except SymphonyError as exc:
            log.warning("tracker request failed: %s", self._redact(str(exc)))
            raise SymphonyError(self._redact(exc.message), code=exc.error_code) from None

    def _secret_values(self) -> list[str]:
        return [s.reveal() for s in (self._adapter.secrets if self._adapter else ()) if s]

    async def redact(self, params: RedactText) -> RedactedText:
        """``tracker.redact``: the launcher's prompt text with every secret held here removed.

        The launcher never holds the tracker's secrets, so it asks the one daemon that does
        (docs/design/0552-prompt-secrets-and-env.md).
        """
        self.refresh()
        return RedactedText(self._redact(params.text))

    def redact_text(self, text: str) -> str:
        """``text`` with the held credential (and known token shapes) scrubbed out."""
        return self._redact(text)

    def _redact(self, text: str) -> str:
        # Also scrubs encoded forms and token shapes of secrets we were not told about.
        return self._redactor.text(text)

    def _holds_secret(self, value: Any) -> bool:
        values = self._secret_values()
        if not values:
            return False
        dumped = json.dumps(encode(value), ensure_ascii=False, default=str)
        return any(v in dumped for v in values)

    def _guarded(self, reply: T) -> T:
        """Refuse to send a reply that contains the credential, whatever put it there."""
        if self._holds_secret(reply):
            log.error("withheld a tracker reply that contained the credential")
            raise SymphonyError(
                "reply withheld: it contained the tracker credential", code="internal_error"
            )
        return reply
