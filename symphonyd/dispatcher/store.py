"""Durable dispatcher state: operator pause, holds, per-issue and daily token usage.

One small TOML file under the state directory, replaced atomically (write a temporary file,
fsync it, rename over the old one, fsync the directory) so a crash leaves either the old or
the new version, never a torn one. SPEC 14.3 keeps scheduling state in memory; these are the
operator decisions and spend counters that must not be forgotten (seed 001, ARCHITECTURE.md
invariant 10).
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from symphonyd.core.api.dispatcher import HoldKind
from symphonyd.core.errors import SymphonyError

STATE_FILE = "dispatcher-state.toml"
_FORMAT = 1
_HOLD_KINDS: tuple[HoldKind, ...] = ("stopped", "blocked", "budget")


class StateFileError(SymphonyError):
    code = "state_unreadable"


@dataclass
class OperatorPause:
    reason: str
    since: str
    by_uid: int | None


@dataclass
class Hold:
    issue_id: str
    identifier: str
    kind: HoldKind
    reason: str
    since: str
    by_uid: int | None = None
    # Tracker fingerprint (state + updated_at) first seen after the hold began; a later,
    # different fingerprint means a human changed the issue and lifts stop/blocked holds.
    baseline: str | None = None


@dataclass
class PersistedState:
    operator_pause: OperatorPause | None = None
    holds: dict[str, Hold] = field(default_factory=dict)
    issue_tokens: dict[str, int] = field(default_factory=dict)
    # When each issue's total last grew (ISO 8601), so prune can forget totals of issues
    # finished long ago; files written before this field have none (stamped at load).
    issue_tokens_at: dict[str, str] = field(default_factory=dict)
    day: str = ""
    tokens_today: int = 0
    # Workspace identifier -> the worker hosts that have a workspace for it, so cleanup goes
    # where the workspace is, never to a guessed host (design 1100; empty without hosts).
    workspace_hosts: dict[str, list[str]] = field(default_factory=dict)
    drained_hosts: list[str] = field(default_factory=list)  # symphonyctl hosts drain

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": _FORMAT,
            "day": self.day,
            "tokens_today": self.tokens_today,
        }
        if self.operator_pause is not None:
            out["operator_pause"] = _drop_none(vars(self.operator_pause))
        out["holds"] = {k: _drop_none(vars(h)) for k, h in self.holds.items()}
        out["issue_tokens"] = dict(self.issue_tokens)
        out["issue_tokens_at"] = dict(self.issue_tokens_at)
        if self.drained_hosts:
            out["drained_hosts"] = list(self.drained_hosts)
        if self.workspace_hosts:
            out["workspace_hosts"] = {k: list(v) for k, v in self.workspace_hosts.items()}
        return out

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> PersistedState:
        if data.get("format") != _FORMAT:
            raise StateFileError(f"unknown state file format {data.get('format')!r}")
        try:
            pause_raw = data.get("operator_pause")
            pause = None
            if pause_raw is not None:
                pause = OperatorPause(
                    reason=_str(pause_raw["reason"]),
                    since=_str(pause_raw["since"]),
                    by_uid=_opt_int(pause_raw.get("by_uid")),
                )
            holds: dict[str, Hold] = {}
            for issue_id, raw in dict(data.get("holds", {})).items():
                kind = raw["kind"]
                if kind not in _HOLD_KINDS:
                    raise StateFileError(f"unknown hold kind {kind!r}")
                holds[issue_id] = Hold(
                    issue_id=issue_id,
                    identifier=_str(raw["identifier"]),
                    kind=kind,
                    reason=_str(raw["reason"]),
                    since=_str(raw["since"]),
                    by_uid=_opt_int(raw.get("by_uid")),
                    baseline=_opt_str(raw.get("baseline")),
                )
            tokens = {str(k): _int(v) for k, v in dict(data.get("issue_tokens", {})).items()}
            tokens_at = {str(k): _str(v) for k, v in dict(data.get("issue_tokens_at", {})).items()}
            owners = {
                str(k): [_str(h) for h in _list(v)]
                for k, v in dict(data.get("workspace_hosts", {})).items()
            }
            return cls(
                operator_pause=pause,
                holds=holds,
                issue_tokens=tokens,
                issue_tokens_at=tokens_at,
                day=_str(data.get("day", "")),
                tokens_today=_int(data.get("tokens_today", 0)),
                workspace_hosts=owners,
                drained_hosts=[_str(h) for h in _list(data.get("drained_hosts", []))],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFileError(f"malformed state file: {exc.__class__.__name__}: {exc}") from None


class StateStore:
    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE

    def load(self) -> PersistedState:
        """The saved state, an empty one when none exists, or StateFileError."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return PersistedState()
        except OSError as exc:
            raise StateFileError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            return PersistedState.from_toml(tomllib.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise StateFileError(f"{self.path} is not valid TOML: {exc}") from None

    def quarantine(self) -> Path | None:
        """Move an unreadable file aside (kept for the operator) so the next save succeeds."""
        target = self.path.with_suffix(".toml.unreadable")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, target)
            return target
        return None

    def save(self, state: PersistedState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = tomli_w.dumps(state.to_toml()).encode("utf-8")
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and k != "issue_id"}


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("expected a string")
    return v


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise TypeError("expected an array")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v is None else _str(v)


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("expected an integer")
    return int(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else _int(v)
