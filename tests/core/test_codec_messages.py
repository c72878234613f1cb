from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.core.codec import decode, encode
from symphonyd.core.errors import ValidationError
from symphonyd.core.issue import Issue, build_issue
from symphonyd.core.wire import (
    ErrorReply,
    Event,
    ProtocolError,
    Request,
    Response,
    encode_error,
    encode_request,
    encode_response,
    parse_frame,
)


@dataclass(frozen=True)
class Inner:
    n: int


@dataclass(frozen=True)
class Outer:
    name: str
    mode: Literal["a", "b"]
    items: list[Inner]
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    maybe: float | None = None
    issue: Issue | None = None


def test_round_trip_nested() -> None:
    issue = build_issue(id="1", identifier="A-1", title="t", state="Todo", dispatchable=True)
    value = Outer("x", "a", [Inner(1), Inner(2)], ("t",), {"k": [1]}, 2.0, issue)
    assert decode(Outer, encode(value)) == value


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"name": 1, "mode": "a", "items": []}, "Outer.name: expected str"),
        ({"name": "x", "mode": "c", "items": []}, "Outer.mode"),
        ({"name": "x", "mode": "a", "items": [{"n": True}]}, "Outer.items[0].n"),
        ({"name": "x", "mode": "a"}, "missing field 'items'"),
        ({"name": "x", "mode": "a", "items": [], "bogus": 1}, "unknown field"),
        ({"name": "x", "mode": "a", "items": [], "issue": {"id": ""}}, "Outer.issue"),
        ([], "expected an object"),
    ],
)
def test_decode_errors_name_the_field(data: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        decode(Outer, data)
    assert fragment in info.value.message


def test_frames_round_trip() -> None:
    assert parse_frame(encode_request(3, HEALTH, Empty())) == Request(3, "health", {})
    assert parse_frame(encode_response(3, {"a": 1})) == Response(3, {"a": 1})
    assert parse_frame(encode_error(None, "timeout", "slow")) == ErrorReply(None, "timeout", "slow")
    assert parse_frame(b'{"v":1,"event":"x","data":{}}') == Event("x", {})


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"\xff\xfe garbage", "malformed_message"),
        (b"[1,2]", "malformed_message"),
        (b'{"v":2,"id":1,"method":"health"}', "unsupported_version"),
        (b'{"v":1,"id":"x","method":"health"}', "malformed_message"),
        (b'{"v":1}', "malformed_message"),
        (b"[" * 100_000, "malformed_message"),
        (b"x" * 2_000_000, "frame_too_large"),
    ],
)
def test_bad_frames_get_typed_errors(line: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_frame(line)
    assert info.value.error_code == code
