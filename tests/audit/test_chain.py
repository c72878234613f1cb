from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from symphonyd.core.audit_chain import (
    GENESIS_PREVIOUS_HASH,
    ChainBreak,
    ChainHead,
    canonical_bytes,
    check_link,
    parse_line,
    parse_stored_line,
    record_hash,
    record_line,
    seal,
)


def _record(
    seq: int, prev: str, ts: str = "2026-11-22T05:00:00.000000Z", **over: Any
) -> dict[str, Any]:
    body = {
        "v": 1,
        "seq": seq,
        "ts": ts,
        "type": "genesis" if seq == 0 else "dispatch",
        "sender": {"uid": 0, "pid": 1, "unit": None, "socket": None},
        "issue_id": None,
        "issue_identifier": None,
        "session_id": None,
        "payload": {"é": "ü", "n": 1},
        "previous_hash": prev,
    }
    body.update(over)
    return seal(body)


def test_canonical_form_is_sorted_compact_utf8() -> None:
    assert canonical_bytes({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_record_hash_is_sha256_of_canonical_bytes_without_the_hash() -> None:
    rec = _record(0, GENESIS_PREVIOUS_HASH)
    body = {k: v for k, v in rec.items() if k != "record_hash"}
    expected = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    assert rec["record_hash"] == expected == record_hash(rec)


def test_round_trip_line_parses_and_links() -> None:
    genesis = _record(0, GENESIS_PREVIOUS_HASH)
    second = _record(1, genesis["record_hash"])
    head = check_link(parse_stored_line(record_line(genesis)), None, day="2026-11-22")
    head = check_link(parse_stored_line(record_line(second)), head, day="2026-11-22")
    assert head == ChainHead(1, second["record_hash"], second["ts"])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.replace(b'"n":1', b'"n":2'), "record_hash does not match"),
        (lambda b: b.replace(b":", b": ", 1), "canonical form"),
        (lambda b: b[:-5], "not a valid JSON"),
        (lambda b: b"[1,2]", "not a JSON object"),
        (lambda b: b.replace(b'"v":1', b'"v":2'), "unsupported record version"),
        (lambda b: b.replace(b'"seq":1', b'"seq":true'), "seq is not"),
        (lambda b: b.replace(b'"issue_id":null,', b""), "bad record keys"),
    ],
)
def test_parse_line_rejects_edits(mutate: Any, reason: str) -> None:
    rec = _record(1, "a" * 64)
    with pytest.raises(ChainBreak, match=reason):
        parse_line(mutate(canonical_bytes(rec)))


def test_unterminated_line_is_a_truncated_record() -> None:
    with pytest.raises(ChainBreak, match="truncated"):
        parse_stored_line(record_line(_record(1, "a" * 64))[:-1])


def test_links_are_checked() -> None:
    genesis = _record(0, GENESIS_PREVIOUS_HASH)
    head = check_link(genesis, None, day=None)
    with pytest.raises(ChainBreak, match="seq 2 where 1"):
        check_link(_record(2, genesis["record_hash"]), head, day=None)
    with pytest.raises(ChainBreak, match="previous_hash does not link"):
        check_link(_record(1, "b" * 64), head, day=None)
    with pytest.raises(ChainBreak, match="ts goes backwards"):
        check_link(
            _record(1, genesis["record_hash"], ts="2026-11-21T00:00:00.000000Z"), head, day=None
        )
    with pytest.raises(ChainBreak, match="day file of 2026-11-23"):
        check_link(_record(1, genesis["record_hash"]), head, day="2026-11-23")
    with pytest.raises(ChainBreak, match="does not start with the genesis"):
        check_link(_record(1, genesis["record_hash"]), None, day=None)
    with pytest.raises(ChainBreak, match="genesis previous_hash"):
        check_link(_record(0, "c" * 64), None, day=None)
