"""Issues as Markdown files with YAML front matter in one directory (the ``local`` tracker).

One file per issue, ``<IDENTIFIER>.md``; the body is the description. Comments go to an
append-only sidecar ``<IDENTIFIER>.comments.md`` so the description stays exactly as written.
Every write is atomic (temp file, fsync, rename, fsync of the directory); every read refuses
symlinks and non-regular files, because an issue file is agent-readable through the read tool
and must never be a window onto another file. Identifiers are checked before they become
paths. See docs/trackers/local.md.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import format_timestamp, parse_timestamp
from symphonyd.core.workflow import parse_workflow_bytes
from symphonyd.tracker.errors import INVALID_IDENTIFIER, RESPONSE, tracker_error

IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SUFFIX = ".md"
COMMENTS_SUFFIX = ".comments.md"
MAX_FILE_BYTES = 1 << 20
# File timestamps come from a coarse clock (a scheduler tick, up to ~10 ms): a file replaced
# twice within one tick, the second time reusing the freed inode number with the same size,
# has the same signature with other bytes. A signature is trusted alone only once its ctime
# was this much older than the moment we looked (docs/design/0405-local-tracker-parse-cache.md).
SETTLED_NS = 2_000_000_000
FIELDS = (
    "id",
    "identifier",
    "title",
    "state",
    "priority",
    "labels",
    "blocked_by",
    "created_at",
    "updated_at",
)


def check_identifier(identifier: Any) -> str:
    if not isinstance(identifier, str) or not IDENTIFIER.match(identifier):
        shown = repr(identifier)[:40] if isinstance(identifier, str) else type(identifier).__name__
        raise tracker_error(
            INVALID_IDENTIFIER,
            f"issue identifier {shown} is not allowed: use 1-64 characters from "
            "[A-Za-z0-9_-], starting with a letter or digit",
        )
    return identifier


def identifier_of(name: str) -> str | None:
    """The issue identifier a file name stands for; None for comments, dot-files, others."""
    if name.endswith(SUFFIX) and not name.endswith(COMMENTS_SUFFIX):
        stem = name[: -len(SUFFIX)]
        if IDENTIFIER.match(stem):
            return stem
    return None


@dataclass(frozen=True)
class LocalRecord:
    """One parsed issue file: front matter as given, plus the body."""

    identifier: str
    meta: Mapping[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class _Cached:
    signature: tuple[int, ...]  # (device, inode, size, mtime_ns, ctime_ns)
    record: LocalRecord
    data: bytes | None  # kept until the signature is settled, to compare bytes instead


class LocalStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        # identifier -> last parse of its file; see read().
        self._cache: dict[str, _Cached] = {}

    def path_for(self, identifier: str) -> Path:
        return self.directory / f"{check_identifier(identifier)}{SUFFIX}"

    # ------------------------------------------------------------------ reads

    def identifiers(self) -> list[str]:
        """Identifiers of the issue files present, sorted; other files are ignored."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise tracker_error(
                "tracker_request",
                f"cannot list issue directory " f"{self.directory}: {exc.strerror}",
            ) from None
        return sorted(i for i in map(identifier_of, names) if i is not None)

    def read(self, identifier: str) -> LocalRecord | None:
        """The parsed file, None when absent; raises tracker_response when malformed.

        A parse is cached under the file's (device, inode, size, mtime, ctime): every write
        here is a rename to a new inode and any edit in place moves ctime. Timestamps are
        coarse, though, so a signature alone is trusted only once it is settled (ctime older
        than SETTLED_NS when we looked); until then the bytes are read and compared. Each
        read still opens and fstats the file, so edits show up on the next poll exactly as
        without the cache.
        """
        path = self.path_for(identifier)
        now = time.time_ns()  # before the fstat: any later change gets a later ctime
        opened = _open_regular(path)
        if opened is None:
            self._cache.pop(identifier, None)
            return None
        fd, signature = opened
        try:
            cached = self._cache.get(identifier)
            if cached is not None and cached.signature == signature and cached.data is None:
                return cached.record
            data = _read_capped(fd, path)
        finally:
            os.close(fd)
        if cached is not None and cached.data is not None and cached.data == data:
            record = cached.record
        else:
            record = self._parse(identifier, data)
        settled = now - signature[4] > SETTLED_NS
        self._cache[identifier] = _Cached(signature, record, None if settled else data)
        return record

    def retain(self, identifiers: Iterable[str]) -> None:
        """Forget cached parses of files that are gone (called after a full listing)."""
        keep = set(identifiers)
        for identifier in [i for i in self._cache if i not in keep]:
            self._cache.pop(identifier, None)

    def _parse(self, identifier: str, data: bytes) -> LocalRecord:
        try:
            parsed = parse_workflow_bytes(data)
        except SymphonyError as exc:
            raise tracker_error(RESPONSE, f"{identifier}{SUFFIX}: {exc.message}") from None
        except Exception as exc:
            # The YAML reader has failure modes outside the parser's typed errors (a NUL byte
            # raises from the loader's constructor); any of them just means "malformed".
            raise tracker_error(
                RESPONSE, f"{identifier}{SUFFIX}: unreadable front matter ({type(exc).__name__})"
            ) from None
        meta = parsed.config
        if meta.get("identifier", identifier) != identifier:
            raise tracker_error(
                RESPONSE,
                f"{identifier}{SUFFIX}: front matter identifier " "does not match the file name",
            )
        return LocalRecord(identifier, meta, parsed.prompt_template)

    def comments(self, identifier: str) -> str:
        data = _read_regular(self.directory / f"{check_identifier(identifier)}{COMMENTS_SUFFIX}")
        return data.decode("utf-8", "replace") if data else ""

    # ------------------------------------------------------------------ writes

    def create(
        self,
        identifier: str,
        *,
        title: str,
        state: str,
        description: str = "",
        priority: int | None = None,
        labels: Iterable[str] = (),
        blocked_by: Iterable[str] = (),
    ) -> LocalRecord:
        path = self.path_for(identifier)
        blockers = [check_identifier(b) for b in blocked_by]
        now = format_timestamp(datetime.now(UTC))
        meta: dict[str, Any] = {
            "id": identifier,
            "identifier": identifier,
            "title": title,
            "state": state,
            "priority": priority,
            "labels": list(labels),
            "blocked_by": blockers,
            "created_at": now,
            "updated_at": now,
        }
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        _write_atomic(path, render(meta, description), exclusive=True)
        return LocalRecord(identifier, meta, description)

    def update(self, identifier: str, **changes: Any) -> LocalRecord:
        record = self.read(identifier)
        if record is None:
            raise tracker_error(RESPONSE, f"issue {identifier} does not exist")
        meta = {**record.meta, **changes, "updated_at": format_timestamp(datetime.now(UTC))}
        _write_atomic(self.path_for(identifier), render(meta, record.description))
        return LocalRecord(identifier, meta, record.description)

    def add_comment(self, identifier: str, body: str, author: str) -> str:
        if self.read(identifier) is None:
            raise tracker_error(RESPONSE, f"issue {identifier} does not exist")
        stamp = format_timestamp(datetime.now(UTC)) or ""
        entry = f"### {stamp} {author}\n\n{body.strip()}\n\n"
        path = self.directory / f"{identifier}{COMMENTS_SUFFIX}"
        _write_atomic(path, (self.comments(identifier) + entry).encode())
        return stamp


def render(meta: Mapping[str, Any], description: str) -> bytes:
    ordered = {k: meta[k] for k in FIELDS if k in meta}
    ordered.update({k: v for k, v in meta.items() if k not in ordered})
    for key in ("created_at", "updated_at"):
        value = ordered.get(key)
        if isinstance(value, datetime):
            ordered[key] = format_timestamp(parse_timestamp(value))
    front = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=100)
    return f"---\n{front}---\n\n{description.strip()}\n".encode()


def _open_regular(path: Path) -> tuple[int, tuple[int, ...]] | None:
    """An fd on the regular file at ``path`` (never through a symlink) and its signature."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise tracker_error(
            RESPONSE, f"{path.name}: cannot open ({exc.strerror}); symlinks " "are refused"
        ) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise tracker_error(RESPONSE, f"{path.name}: not a regular file")
    return fd, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_capped(fd: int, path: Path) -> bytes:
    data = os.read(fd, MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise tracker_error(RESPONSE, f"{path.name}: larger than {MAX_FILE_BYTES} bytes")
    return data


def _read_regular(path: Path) -> bytes | None:
    opened = _open_regular(path)
    if opened is None:
        return None
    try:
        return _read_capped(opened[0], path)
    finally:
        os.close(opened[0])


def _write_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        if os.geteuid() == 0:
            # `symphonyctl issue` run by root writes into the tracker daemon's state
            # directory: hand the file to the directory's owner so the daemon can read it.
            st = os.stat(path.parent)
            os.fchown(fd, st.st_uid, st.st_gid)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # fails if the issue already exists: no silent overwrite
            except FileExistsError:
                raise tracker_error(
                    INVALID_IDENTIFIER, f"issue {path.stem} already exists"
                ) from None
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
