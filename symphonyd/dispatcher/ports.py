"""What the orchestrator needs from the outside world, as small async protocols.

The daemon adapts these to IPC clients; tests plug in in-memory doubles or the same IPC
adapters against servers they run themselves. Any exception from a port counts as "that
daemon is unavailable right now"; the orchestrator never lets one escape a tick.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.launcher import (
    RunInfo,
    StartRun,
    StartRunResult,
    StopRun,
    StopRunResult,
    WorkflowSnapshot,
    WorkspaceListing,
)
from symphonyd.core.issue import Issue


class TrackerPort(Protocol):
    async def fetch_by_states(self, states: list[str]) -> list[Issue]: ...

    async def fetch_by_ids(self, ids: list[str]) -> list[Issue]: ...


class LauncherPort(Protocol):
    async def start_run(self, req: StartRun) -> StartRunResult: ...

    async def stop_run(self, req: StopRun) -> StopRunResult: ...

    async def list_runs(self) -> list[RunInfo]: ...

    async def ack_runs(self, run_ids: list[str]) -> None: ...

    async def remove_workspace(
        self,
        identifier: str,
        *,
        min_idle_s: float | None = None,
        workflow: WorkflowSnapshot | None = None,
    ) -> bool: ...

    async def list_workspaces(self, workflow: WorkflowSnapshot | None) -> WorkspaceListing: ...

    async def workspace_ages(self, identifiers: list[str]) -> dict[str, float | None]: ...


class AuditPort(Protocol):
    async def append(self, records: list[AuditEventIn]) -> None:
        """Return only once the records are durable; raise if they are not."""
        ...

    async def probe(self) -> None:
        """Raise unless the audit writer answers (used to lift an audit pause)."""
        ...


class Clock(Protocol):
    def monotonic_ms(self) -> int: ...

    def now(self) -> datetime: ...


class SystemClock:
    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class DispatchSettings:
    """The slice of the typed service config the orchestrator reads (SPEC 6.4 names).

    States are stored in :func:`symphonyd.core.issue.state_key` form, except
    ``active_states_raw`` which is what the tracker is asked for.
    """

    active_states_raw: tuple[str, ...] = ("Todo", "In Progress")
    active_states: frozenset[str] = frozenset({"todo", "in progress"})
    terminal_states_raw: tuple[str, ...] = ("Done", "Closed", "Cancelled", "Canceled")
    terminal_states: frozenset[str] = frozenset({"done", "closed", "cancelled", "canceled"})
    required_labels: tuple[str, ...] = ()
    poll_interval_ms: int = 30_000
    handoff_grace_ms: int = 20_000  # polling.handoff_grace_ms (design 0713)
    max_concurrent_agents: int = 10
    max_concurrent_agents_by_state: dict[str, int] = field(default_factory=dict)
    max_retry_backoff_ms: int = 300_000
    stall_timeout_ms: int = 300_000
    tokens_per_issue: int | None = None
    tokens_per_day: int | None = None
    workspace_root: str | None = None
    min_free_disk_bytes: int = 0
    max_age_days: int | None = None  # workspace.cleanup.max_age_days; None: age cleanup off


@dataclass(frozen=True)
class LoadedConfig:
    """One successfully validated WORKFLOW.md: the settings plus the snapshot runs bind to."""

    settings: DispatchSettings
    workflow: WorkflowSnapshot


class ConfigSource(Protocol):
    def load(self) -> LoadedConfig:
        """Read and validate the workflow now; raise SymphonyError when it is unusable.

        Called before every dispatch (SPEC 6.2 defensive reload), so implementations should
        be cheap when nothing changed.
        """
        ...


class DiskProbe(Protocol):
    def free_bytes(self, path: str) -> int | None:
        """Free bytes for unprivileged writers under ``path``; None when unknown."""
        ...
