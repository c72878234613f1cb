"""Shared helpers for the audit tests: a store on a controllable clock and quick appends."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from symphonyd.audit.shaping import shape
from symphonyd.audit.store import AuditStore, Pending, Sender
from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.redact import Redactor

WRITER = Sender(uid=os.getuid(), pid=os.getpid(), unit="symphony-audit.service", socket=None)
CLIENT = Sender(uid=998, pid=4242, unit="symphony-dispatcher.service", socket="dispatcher")


class Clock:
    """Writer clock the test moves by hand (to cross day boundaries)."""

    def __init__(self, day: str = "2026-11-20") -> None:
        self.day = day
        self.tick = 0

    def __call__(self) -> str:
        self.tick += 1
        hours, rest = divmod(self.tick, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{self.day}T{hours % 24:02d}:{minutes:02d}:{seconds:02d}.000000Z"


def records_in(directory: Path) -> list[dict[str, Any]]:
    """Every record of every day file in ``directory``, oldest first."""
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.ndjson"))
        for line in path.read_bytes().splitlines()
    ]


def open_store(directory: Path, clock: Clock | None = None) -> AuditStore:
    store = AuditStore(directory, writer=WRITER, clock=clock or Clock())
    store.open()
    return store


def pending(n: int, *, kind: str = "dispatch", sender: Sender = CLIENT, **payload: Any) -> Pending:
    event = AuditEventIn(type=kind, payload={"n": n, **payload}, issue_id=f"id-{n % 3}")
    return Pending(shape(event, Redactor()), sender)


def fill(directory: Path, days: list[str], per_day: int) -> AuditStore:
    """A store with ``per_day`` records on each of ``days`` (the genesis on the first)."""
    clock = Clock(days[0])
    store = open_store(directory, clock)
    n = 0
    for day in days:
        clock.day, clock.tick = day, 0
        for _ in range(per_day):
            store.append([pending(n)])
            n += 1
    store.close()
    return store
