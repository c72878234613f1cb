"""Fixtures: a dispatcher double on a real Unix socket and a real dashboard process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from symphonyd.core import audit_events
from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend
from symphonyd.runtime.ipc_client import IpcClient
from tests.audit.daemon_proc import AuditDaemon
from tests.dashboard.double import DispatcherDouble
from tests.dashboard.harness import DashboardProcess, short_dir
from tests.dashboard.history_data import append_history


@dataclass
class Running:
    dispatcher: DispatcherDouble
    dashboard: DashboardProcess
    dir: Path

    @property
    def base(self) -> str:
        return self.dashboard.base

    @property
    def origin(self) -> str:
        return self.dashboard.base


@pytest.fixture
def running() -> Iterator[Running]:
    with (
        short_dir() as d,
        DispatcherDouble(d / "disp.sock") as dispatcher,
        DashboardProcess(d / "disp.sock", None, d / "dashboard.log") as dashboard,
    ):
        yield Running(dispatcher, dashboard, d)


@dataclass
class WithAudit:
    audit: AuditDaemon
    dashboard: DashboardProcess
    audit_dir: Path

    def control(self) -> dict[str, str]:
        token = httpx.get(self.dashboard.base + "/api/v1/csrf").json()["token"]
        return {"X-CSRF-Token": token, "Origin": self.dashboard.base}


def append_records(sock: Path) -> None:
    async def send() -> None:
        async with await IpcClient.connect(sock) as client:
            await client.call(
                AUDIT_APPEND,
                AuditAppend(
                    [
                        audit_events.dispatch("id-1", "MT-1", "run-1", None),
                        audit_events.dispatch("id-2", "MT-2", "run-2", None),
                        audit_events.run_finished("id-2", "MT-2", "run-2", "failed",
                                                  error_code="turn_failed"),
                        audit_events.egress(False, "denied.test", 443, issue_id="id-1"),
                        audit_events.run_finished("id-1", "MT-1", "run-1", "succeeded"),
                    ]
                ),
            )  # fmt: skip

    asyncio.run(asyncio.wait_for(send(), 30))


@contextlib.contextmanager
def _audited(
    tmp_path: Path, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[AuditDaemon, DashboardProcess, Path]]:
    """The real audit daemon, a dispatcher double and the dashboard wired to both."""
    audit_dir = tmp_path / "audit"
    with short_dir() as d:
        dash_sock = d / "dashboard.sock"
        audit = AuditDaemon(audit_dir, d, extra=("--listen", f"dashboard={dash_sock}"))
        with (
            audit,
            DispatcherDouble(d / "disp.sock"),
            DashboardProcess(
                d / "disp.sock", dash_sock, d / "dash.log", prefix=prefix
            ) as dashboard,
        ):
            yield audit, dashboard, audit_dir


@pytest.fixture
def with_audit(tmp_path: Path) -> Iterator[WithAudit]:
    with _audited(tmp_path) as (audit, dashboard, audit_dir):
        append_records(audit.sock("dispatcher"))
        yield WithAudit(audit, dashboard, audit_dir)


@pytest.fixture
def with_history(tmp_path: Path) -> Iterator[WithAudit]:
    """Four runs of three issues, with transcripts and sandbox records (history_data.py)."""
    with _audited(tmp_path) as (audit, dashboard, audit_dir):
        append_history({name: audit.sock(name) for name in ("dispatcher", "launcher")})
        yield WithAudit(audit, dashboard, audit_dir)
