"""The adapter contract every tracker kind implements (SPEC 11.1, 10.5).

Subclasses implement the ``_fetch_*`` methods and the three tool primitives; this base owns the
rules that are the same everywhere: empty input means no provider request, ids are a set, a
refresh result contains only requested ids and each at most once, and tool calls are
argument-checked, scoped to the run's issue, audited and turned into structured results.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from symphonyd.core.api.tracker import ToolResult, ToolSpec
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import Issue
from symphonyd.tracker import tools
from symphonyd.tracker.errors import RESPONSE, tracker_error
from symphonyd.tracker.provider_config import TrackerSettings
from symphonyd.tracker.secret import Secret

log = logging.getLogger(__name__)


class TrackerAdapter(ABC):
    kind: ClassVar[str]

    def __init__(self, settings: TrackerSettings, tool_states: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.tool_states = tool_states
        self.audit: tools.AuditHook = tools.log_only_audit
        # Credentials this adapter holds; the daemon withholds any reply that contains one.
        self.secrets: tuple[Secret, ...] = ()

    # ---------------------------------------------------------------- reads (SPEC 11.1)

    async def fetch_issues_by_states(self, states: Sequence[str]) -> list[Issue]:
        wanted = _unique(s for s in states if isinstance(s, str) and s.strip())
        if not wanted:
            return []
        return await self._fetch_by_states(wanted)

    async def fetch_issues_by_ids(self, ids: Sequence[str]) -> list[Issue]:
        wanted = _unique(i for i in ids if isinstance(i, str) and i)
        if not wanted:
            return []
        found = await self._fetch_by_ids(wanted)
        requested = set(wanted)
        out: dict[str, Issue] = {}
        for issue in found:
            if issue.id not in requested:
                raise tracker_error(RESPONSE, "tracker returned an issue that was not requested")
            out.setdefault(issue.id, issue)
        return list(out.values())

    @abstractmethod
    async def _fetch_by_states(self, states: list[str]) -> list[Issue]: ...

    @abstractmethod
    async def _fetch_by_ids(self, ids: list[str]) -> list[Issue]: ...

    def secret_environment_names(self) -> list[str]:
        return []

    def redact(self, text: str) -> str:
        """Provider text (error messages) with any held credential blanked out."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret.reveal(), "[redacted]")
        return text

    async def aclose(self) -> None:
        return None

    def watch_directory(self) -> Path | None:
        """A directory whose changes are issue changes (the local tracker's files), else None."""
        return None

    # ---------------------------------------------------------------- agent tools (SPEC 10.5)

    def tool_specs(self) -> list[ToolSpec]:
        specs = [tools.READ_SPEC, tools.COMMENT_SPEC]
        if self.tool_states:
            specs.append(tools.move_spec(self.tool_states))
        return specs + self._extra_tool_specs()

    async def execute_tool(
        self, name: str, arguments: Any, issue: Issue, session_id: str | None = None
    ) -> ToolResult:
        advertised = {spec.name for spec in self.tool_specs()}
        if name not in advertised:
            return tools.failure("unsupported_tool", f"tool {name[:80]!r} is not offered")
        try:
            if name == tools.READ:
                tools.arguments_object(arguments, set())
                return await self._read(issue)
            if name == tools.COMMENT:
                body = tools.comment_body(arguments)
                return await self._audited(
                    issue,
                    session_id,
                    "comment",
                    self._comment(issue, body),
                    tools.comment_digest(body),
                )
            if name == tools.MOVE:
                state = tools.target_state(arguments, self.tool_states)
                return await self._audited(
                    issue,
                    session_id,
                    "move",
                    self._move(issue, state),
                    {"from_state": issue.state, "to_state": state},
                )
            return await self._extra_tool(name, arguments, issue, session_id)
        except SymphonyError as exc:
            return tools.failure(exc.error_code, exc.message)
        except Exception:
            log.exception("tool %s failed unexpectedly", name)
            return tools.failure("internal_error", "the tool failed inside the tracker daemon")

    async def _read(self, issue: Issue) -> ToolResult:
        current = await self.fetch_issues_by_ids([issue.id])
        if not current:
            return tools.failure("issue_not_visible", "the issue is no longer visible")
        return ToolResult(True, {"issue": current[0].to_dict()})

    async def _audited(
        self,
        issue: Issue,
        session_id: str | None,
        action: str,
        work: Awaitable[dict[str, Any]],
        payload: dict[str, Any],
    ) -> ToolResult:
        try:
            output = await work
        except SymphonyError as exc:
            await self.audit(
                tools.write_event(
                    self.kind,
                    issue,
                    session_id,
                    action,
                    False,
                    error_code=exc.error_code,
                    **payload,
                )
            )
            raise
        await self.audit(tools.write_event(self.kind, issue, session_id, action, True, **payload))
        return ToolResult(True, output)

    @abstractmethod
    async def _comment(self, issue: Issue, body: str) -> dict[str, Any]: ...

    @abstractmethod
    async def _move(self, issue: Issue, state: str) -> dict[str, Any]: ...

    def _extra_tool_specs(self) -> list[ToolSpec]:
        return []

    async def _extra_tool(
        self, name: str, arguments: Any, issue: Issue, session_id: str | None
    ) -> ToolResult:
        return tools.failure("unsupported_tool", f"tool {name[:80]!r} is not offered")


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def blocked(blockers: Iterable[Any], terminal_states: Sequence[str]) -> bool:
    """True when any blocker is not known to be in a terminal state (unknown blocks)."""
    terminal = {s.strip().lower() for s in terminal_states}
    return any(b.state is None or b.state.strip().lower() not in terminal for b in blockers)
