"""Reading a container's PID 1 journal into what the soak test checks (tests/e2e/test_soak.py).

PID 1 names each transient unit by its description ("symphony hook before_run for SOAK-7",
"symphony agent for SOAK-7"), so every agent and hook unit maps to its issue; its lines say
when the unit started, when it ended, and whether systemd had to kill something in it
("Killing process ...", "code=killed", a result of ``signal`` or ``timeout``).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# systemd 252 says "Started <unit> - <description>.", older ones "Started <description>."
_STARTED = re.compile(
    r"^Start(?:ed|ing) (?:\S+ - )?(symphony (?:hook \S+|agent) for (\S+?))(?:\.|\.\.\.)?$"
)
_ENDED = re.compile(r"^(?:\S+: Deactivated successfully|\S+: Failed with result|Stopped )")
_KILLED = re.compile(
    r"Killing process|code=killed|Failed with result '(?:signal|timeout)'|timed out"
)


@dataclass
class UnitLife:
    unit: str
    description: str = ""
    issue: str | None = None
    started: float | None = None  # seconds since the epoch (journal realtime)
    ended: float | None = None
    kills: list[tuple[float, str]] = field(default_factory=list)  # (when, journal line)


def _when(entry: dict[str, object]) -> float:
    return int(str(entry["__REALTIME_TIMESTAMP"])) / 1e6


def read_units(json_lines: Iterable[str], prefixes: tuple[str, ...]) -> dict[str, UnitLife]:
    """Each unit whose name starts with one of ``prefixes``, from ``journalctl -o json _PID=1``."""
    units: dict[str, UnitLife] = {}
    for line in json_lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        unit = entry.get("UNIT")
        message = entry.get("MESSAGE")
        if not isinstance(unit, str) or not unit.startswith(prefixes):
            continue
        if not isinstance(message, str):  # a message journald kept as bytes
            message = bytes(message or []).decode("utf-8", "replace")
        life = units.setdefault(unit, UnitLife(unit))
        when = _when(entry)
        started = _STARTED.match(message)
        if started is not None:
            life.description, life.issue = started.group(1), started.group(2)
            life.started = when if life.started is None else min(life.started, when)
        if _ENDED.match(message):
            life.ended = when if life.ended is None else max(life.ended, when)
        if _KILLED.search(message):
            life.kills.append((when, f"{unit}: {message}"))
    return units


def overlaps(units: Iterable[UnitLife]) -> list[tuple[UnitLife, UnitLife]]:
    """Pairs of units of one issue that ran at the same time (a unit without an end counts
    as running until the journal's end)."""
    by_issue: dict[str, list[UnitLife]] = {}
    for life in units:
        if life.issue is not None and life.started is not None:
            by_issue.setdefault(life.issue, []).append(life)
    found: list[tuple[UnitLife, UnitLife]] = []
    for lives in by_issue.values():
        lives.sort(key=lambda u: u.started or 0.0)
        for before, after in itertools.pairwise(lives):
            assert after.started is not None
            if before.ended is None or before.ended > after.started:
                found.append((before, after))
    return found


@dataclass(frozen=True)
class Failure:
    """A hook or run the launcher reports as failed or timed out."""

    when: float
    issue: str | None
    line: str
    run_started: float | None  # when the launcher started the run it belongs to


def read_failures(json_lines: Iterable[str]) -> list[Failure]:
    """From ``journalctl -o json SYMPHONY_EVENT=hook SYMPHONY_EVENT=run`` (the launcher's)."""
    entries = [json.loads(line) for line in json_lines if line.strip()]
    started = {
        e["RUN_ID"]: _when(e)
        for e in entries
        if e.get("SYMPHONY_EVENT") == "run" and e.get("OUTCOME") == "started" and "RUN_ID" in e
    }
    found: list[Failure] = []
    for entry in entries:
        if entry.get("OUTCOME") not in ("failed", "timed_out"):
            continue
        issue = entry.get("ISSUE_IDENTIFIER")
        found.append(
            Failure(
                _when(entry),
                issue if isinstance(issue, str) else None,
                str(entry["MESSAGE"]),
                started.get(entry.get("RUN_ID")),
            )
        )
    return found
