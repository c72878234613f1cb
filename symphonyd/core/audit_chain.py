"""The audit hash chain: canonical bytes, record hashes and per-record verification.

A record is one JSON object. Its canonical serialisation is ``json.dumps`` with sorted keys,
no whitespace, ``ensure_ascii=False``, no NaN/Infinity, encoded as UTF-8. ``record_hash`` is
the SHA-256 hex digest of the canonical bytes of the record *without* ``record_hash``; each
line of a day file is the canonical bytes of the *whole* record plus ``\\n``. The first record
ever is ``seq`` 0 of type ``genesis`` whose ``previous_hash`` is 64 zeros; every later record
links to the one before it, across day files. docs/audit.md writes this down for verifiers
in other languages.

Everything here is pure so the writer, the verifier and the tests share one definition.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

RECORD_VERSION = 1
GENESIS_PREVIOUS_HASH = "0" * 64
GENESIS_TYPE = "genesis"

# Every record has exactly these keys; a verifier rejects extra or missing ones.
RECORD_KEYS = frozenset(
    {
        "v",
        "seq",
        "ts",
        "type",
        "sender",
        "issue_id",
        "issue_identifier",
        "session_id",
        "payload",
        "previous_hash",
        "record_hash",
    }
)
SENDER_KEYS = frozenset({"uid", "pid", "unit", "socket"})

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
# Writer timestamps: RFC 3339, UTC, microseconds, "Z" suffix. Fixed width so they sort.
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_bytes(obj: Any) -> bytes:
    """The one serialisation everything hashes and writes."""
    return _CANONICAL.encode(obj).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 hex over the canonical bytes of ``record`` minus its ``record_hash`` key."""
    body = {k: v for k, v in record.items() if k != "record_hash"}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """Return ``record`` with its ``record_hash`` filled in."""
    sealed = {k: v for k, v in record.items() if k != "record_hash"}
    sealed["record_hash"] = record_hash(sealed)
    return sealed


def record_line(record: dict[str, Any]) -> bytes:
    """The exact bytes a sealed record occupies in a day file."""
    return canonical_bytes(record) + b"\n"


def day_of(ts: str) -> str:
    """``YYYY-MM-DD`` of a writer timestamp: the day file the record belongs to."""
    return ts[:10]


@dataclass(frozen=True)
class ChainHead:
    """What a verifier (or the writer) must remember to check the next record."""

    seq: int
    hash: str
    ts: str


class ChainBreak(Exception):
    """One record does not fit the chain; ``reason`` is a short human sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_line(line: bytes) -> dict[str, Any]:
    """Parse one complete line (without its newline) into a well-formed, self-consistent record.

    Checks shape, types, that the bytes are exactly the canonical form (so any edit of any
    byte, including whitespace or key order, is a break) and that ``record_hash`` matches the
    content. Raises ChainBreak.
    """
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ChainBreak("not a valid JSON line") from None
    if not isinstance(obj, dict):
        raise ChainBreak("line is not a JSON object")
    keys = set(obj)
    if keys != RECORD_KEYS:
        missing, extra = sorted(RECORD_KEYS - keys), sorted(keys - RECORD_KEYS)
        raise ChainBreak(f"bad record keys (missing {missing}, unexpected {extra})")
    _check_shape(obj)
    try:
        canonical = canonical_bytes(obj)
    except (ValueError, UnicodeEncodeError):
        raise ChainBreak("record cannot be serialised canonically") from None
    if canonical != line:
        raise ChainBreak("line is not in canonical form (edited)")
    if _hash_of_canonical_line(line, obj["record_hash"]) != obj["record_hash"]:
        raise ChainBreak("record_hash does not match the record's content (edited)")
    return obj


def _hash_of_canonical_line(line: bytes, stored: str) -> str:
    """record_hash of a line already known to be canonical, without serialising again.

    Dropping one member from a sorted, compact object leaves every other byte as it was,
    so the body's canonical bytes are the line minus ``,"record_hash":"<hex>"``. Keys that
    sort after it (sender, seq, session_id, ts, type, v) hold no nested objects, so the last
    occurrence is the top-level member.
    """
    member = b',"record_hash":"' + stored.encode("ascii") + b'"'
    at = line.rfind(member)
    return hashlib.sha256(line[:at] + line[at + len(member) :]).hexdigest()


def parse_stored_line(raw: bytes) -> dict[str, Any]:
    """Like :func:`parse_line` for a line as read from a file, newline included."""
    if not raw.endswith(b"\n"):
        raise ChainBreak("truncated record (line has no trailing newline)")
    return parse_line(raw[:-1])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_shape(obj: dict[str, Any]) -> None:
    if obj["v"] != RECORD_VERSION or not _is_int(obj["v"]):
        raise ChainBreak(f"unsupported record version {obj['v']!r}")
    if not _is_int(obj["seq"]) or obj["seq"] < 0:
        raise ChainBreak("seq is not a non-negative integer")
    if not isinstance(obj["ts"], str) or not _TS.match(obj["ts"]):
        raise ChainBreak("ts is not a writer timestamp")
    if not isinstance(obj["type"], str) or not _TYPE.match(obj["type"]):
        raise ChainBreak("type is not a valid event type")
    sender = obj["sender"]
    if not isinstance(sender, dict) or set(sender) != SENDER_KEYS:
        raise ChainBreak("sender is not {uid, pid, unit, socket}")
    if not (_is_int(sender["uid"]) and _is_int(sender["pid"])):
        raise ChainBreak("sender uid/pid are not integers")
    for key in ("issue_id", "issue_identifier", "session_id"):
        if obj[key] is not None and not isinstance(obj[key], str):
            raise ChainBreak(f"{key} is neither null nor a string")
    if not isinstance(obj["payload"], dict):
        raise ChainBreak("payload is not an object")
    for key in ("previous_hash", "record_hash"):
        if not isinstance(obj[key], str) or not _HEX64.match(obj[key]):
            raise ChainBreak(f"{key} is not 64 lowercase hex digits")


def check_link(record: dict[str, Any], prev: ChainHead | None, *, day: str | None) -> ChainHead:
    """Check a parsed record's links to the chain head before it; return the new head.

    ``prev`` None means this must be the genesis record. ``day`` is the day file the record
    was read from (None to skip that check). Raises ChainBreak naming the first problem.
    """
    if prev is None:
        if record["seq"] != 0 or record["type"] != GENESIS_TYPE:
            raise ChainBreak("chain does not start with the genesis record (seq 0)")
        if record["previous_hash"] != GENESIS_PREVIOUS_HASH:
            raise ChainBreak("genesis previous_hash is not 64 zeros")
    else:
        if record["seq"] != prev.seq + 1:
            raise ChainBreak(
                f"seq {record['seq']} where {prev.seq + 1} was expected "
                "(records missing, reordered or duplicated)"
            )
        if record["previous_hash"] != prev.hash:
            raise ChainBreak("previous_hash does not link to the record before it")
        if record["ts"] < prev.ts:
            raise ChainBreak("ts goes backwards")
        if record["type"] == GENESIS_TYPE:
            raise ChainBreak("a second genesis record")
    if day is not None and day_of(record["ts"]) != day:
        raise ChainBreak(f"record of {day_of(record['ts'])} in the day file of {day}")
    return ChainHead(record["seq"], record["record_hash"], record["ts"])
