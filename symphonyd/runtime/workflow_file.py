"""Load WORKFLOW.md from disk and notice when it changes (SPEC 5.1, 6.2).

:class:`WorkflowWatcher` is polled from a daemon's own loop; it needs no inotify and no thread.
A cheap ``stat`` tells it when to re-read; the SHA-256 of the bytes tells it whether the content
really changed (an editor's rewrite with identical bytes is not a reload). A bad edit keeps the
last good workflow in force and surfaces the error until the file is fixed.
See docs/design/0100-workflow-reload-by-polling.md.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Generic, TypeVar

from symphonyd.core.errors import SymphonyError, WorkflowError
from symphonyd.core.workflow import (
    MAX_WORKFLOW_BYTES,
    MISSING_WORKFLOW_FILE,
    WORKFLOW_PARSE_ERROR,
    WorkflowDefinition,
    parse_workflow_bytes,
)

DEFAULT_WORKFLOW_NAME = "WORKFLOW.md"
T = TypeVar("T")


def resolve_workflow_path(
    explicit: str | os.PathLike[str] | None, cwd: str | Path | None = None
) -> Path:
    """SPEC 5.1: the explicit path if given, else ``WORKFLOW.md`` in the working directory."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit)
    return Path(cwd if cwd is not None else os.getcwd()) / DEFAULT_WORKFLOW_NAME


@dataclass(frozen=True, slots=True)
class LoadedWorkflow:
    definition: WorkflowDefinition
    path: Path
    sha256: str
    mtime_ns: int
    size: int
    # The bytes this version was parsed from, for a daemon that keeps a copy of the version
    # in force (the tracker, docs/design/0155-one-last-good-workflow.md).
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def directory(self) -> Path:
        """Directory relative workspace paths resolve against (SPEC 5.3.3)."""
        return self.path.absolute().parent


def load_workflow(path: str | os.PathLike[str]) -> LoadedWorkflow:
    """Read, fingerprint and parse one workflow file; raises WorkflowError."""
    target = Path(path)
    return _parse(target, _read(target))


_StatKey = tuple[int, int, int, int, int]


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    data: bytes
    sha256: str
    mtime_ns: int
    key: _StatKey


def _read(path: Path) -> _Snapshot:
    try:
        with path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise WorkflowError(
                    f"{path} is not a regular file", code=MISSING_WORKFLOW_FILE, path=str(path)
                )
            # Read one byte past the limit so an oversized file is refused, not truncated.
            data = handle.read(MAX_WORKFLOW_BYTES + 1)
    except OSError as exc:
        raise WorkflowError(
            f"cannot read workflow file {path}: {exc.strerror or type(exc).__name__}",
            code=MISSING_WORKFLOW_FILE,
            path=str(path),
        ) from None
    return _Snapshot(data, hashlib.sha256(data).hexdigest(), st.st_mtime_ns, _stat_key(st))


def _parse(path: Path, snap: _Snapshot) -> LoadedWorkflow:
    try:
        definition = parse_workflow_bytes(snap.data)
    except WorkflowError as exc:
        raise WorkflowError(f"{path}: {exc.message}", code=exc.error_code, path=str(path)) from None
    return LoadedWorkflow(
        definition=definition,
        path=path,
        sha256=snap.sha256,
        mtime_ns=snap.mtime_ns,
        size=len(snap.data),
        raw=snap.data,
    )


class Change(Enum):
    UNCHANGED = "unchanged"
    RELOADED = "reloaded"
    # The file changed but is invalid; the last good workflow stays in force.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Good(Generic[T]):
    """A workflow that parsed and whose derived value (e.g. ServiceConfig) was built."""

    workflow: LoadedWorkflow
    value: T


@dataclass(frozen=True, slots=True)
class PollResult(Generic[T]):
    change: Change
    current: Good[T]
    # Set while the file on disk is invalid, also on UNCHANGED polls, so an operator-facing
    # status can keep showing it until fixed.
    error: SymphonyError | None = None


class WorkflowWatcher(Generic[T]):
    """Tracks one workflow file; ``build`` turns a parsed file into the value a daemon uses.

    ``build`` may raise any SymphonyError (ConfigError for bad values); such a file is treated
    exactly like unparsable YAML. Construction loads the file once and raises if that first
    load fails: startup with an invalid workflow must fail (SPEC 6.3).
    """

    def __init__(self, path: str | os.PathLike[str], build: Callable[[LoadedWorkflow], T]) -> None:
        self.path = Path(path)
        self._build = build
        snap = _read(self.path)
        loaded = _parse(self.path, snap)
        self._current: Good[T] = Good(loaded, build(loaded))
        self._seen: _StatKey | None = snap.key
        self._error: SymphonyError | None = None
        # Fingerprint of the bytes that produced _error, so a forced poll of an unchanged
        # bad file does not parse it again.
        self._bad_sha: str | None = None

    @property
    def current(self) -> Good[T]:
        return self._current

    @property
    def error(self) -> SymphonyError | None:
        return self._error

    def poll(self, *, force: bool = False) -> PollResult[T]:
        """Check the file; ``force`` re-reads even when stat looks unchanged.

        Call with ``force=True`` before dispatch decisions: a same-size rewrite within the
        file system's timestamp granularity is invisible to stat alone.
        """
        try:
            key = _stat_key(os.stat(self.path))
        except OSError as exc:
            return self._fail(
                WorkflowError(
                    f"cannot read workflow file {self.path}: {exc.strerror or 'error'}",
                    code=MISSING_WORKFLOW_FILE,
                    path=str(self.path),
                ),
                None,
            )
        if key == self._seen and not force:
            return PollResult(Change.UNCHANGED, self._current, self._error)
        try:
            snap = _read(self.path)
        except WorkflowError as exc:
            return self._fail(exc, None)
        self._seen = snap.key
        if snap.sha256 == self._current.workflow.sha256:
            if self._error is None:
                return PollResult(Change.UNCHANGED, self._current)
            # A bad edit was reverted: the good workflow is back, the error is over.
            self._error = self._bad_sha = None
            return PollResult(Change.RELOADED, self._current)
        if snap.sha256 == self._bad_sha:
            return PollResult(Change.UNCHANGED, self._current, self._error)
        try:
            loaded = _parse(self.path, snap)
            value = self._build(loaded)
        except SymphonyError as exc:
            return self._fail(exc, snap.sha256)
        except Exception as exc:
            # A build bug must not take the daemon down on a bad edit either.
            return self._fail(
                WorkflowError(f"{self.path}: {type(exc).__name__}", code=WORKFLOW_PARSE_ERROR),
                snap.sha256,
            )
        self._current = Good(loaded, value)
        self._error = self._bad_sha = None
        return PollResult(Change.RELOADED, self._current)

    def _fail(self, error: SymphonyError, bad_sha: str | None) -> PollResult[T]:
        if bad_sha is None:
            # Unreadable or missing: look again on every poll so its return is noticed.
            self._seen = None
        self._bad_sha = bad_sha
        new = self._error is None or self._error.as_dict() != error.as_dict()
        self._error = error
        return PollResult(Change.FAILED if new else Change.UNCHANGED, self._current, error)
