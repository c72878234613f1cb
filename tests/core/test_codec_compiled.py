"""The compiled codec and the inlined Issue.from_dict decode exactly as before.

The oracle is the previous implementation, kept verbatim in tests/core/codec_reference.py.
For every params, result and event type of the IPC catalogue, generated JSON values (well
formed ones and ones with wrong leaves, missing and unknown fields) must give the same value
(same repr, and the same bytes when encoded into a frame again) or the same error message.
"""

from __future__ import annotations

import copy
import hashlib
import json
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symphonyd.core.api.audit
import symphonyd.core.api.dispatcher
import symphonyd.core.api.launcher
import symphonyd.core.api.shared
import symphonyd.core.api.tracker  # noqa: F401 - registers the catalogue's methods
from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import IssueList
from symphonyd.core.codec import decode
from symphonyd.core.errors import ValidationError
from symphonyd.core.issue import Issue, build_issue
from symphonyd.core.wire import EVENTS, METHODS, encode_response
from tests.core import codec_reference as reference

LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
TIMESTAMPS = st.sampled_from(
    ["2026-01-01T00:00:00Z", "2026-03-04T05:06:07.123456+00:00", "2026-03-04T05:06:07+02:00",
     "2026-03-04T05:06:07", "not a time", ""]
)  # fmt: skip


def _issue_dict(wild: bool) -> st.SearchStrategy[Any]:
    """Issue.to_dict-shaped objects; ``wild``: one field (or one blocker's) replaced by any
    JSON value or dropped, so each check is reached with the others passing."""
    opt_text = st.none() | st.text(max_size=4)
    blocker = st.fixed_dictionaries({}, optional={"id": opt_text, "identifier": opt_text,
                                                  "state": opt_text})  # fmt: skip
    good = st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=4),
            "identifier": st.text(min_size=1, max_size=4),
            "title": st.text(min_size=1, max_size=4),
            "state": st.sampled_from(["Todo", "Done"]),
            "dispatchable": st.booleans(),
        },
        optional={
            "description": opt_text,
            "priority": st.none() | st.integers(-5, 5),
            "branch_name": opt_text,
            "url": opt_text,
            "assignee_id": opt_text,
            "labels": st.lists(st.text(max_size=3), max_size=3),
            "blocked_by": st.lists(blocker, max_size=2),
            "created_at": st.none() | TIMESTAMPS,
            "updated_at": st.none() | TIMESTAMPS,
            "native_ref": st.none() | st.dictionaries(st.text(max_size=3), LEAF),
            "extra": LEAF,
        },
    )
    if not wild:
        return good

    def spoil(d: dict[str, Any], key: str, value: Any, drop: bool) -> dict[str, Any]:
        target = d["blocked_by"][0] if key == "blocker" and d.get("blocked_by") else d
        if key == "blocker":
            key = "state"
        if drop:
            target.pop(key, None)
        else:
            target[key] = value
        return d

    keys = st.sampled_from([*ISSUE_KEYS, "blocker"])
    return st.builds(spoil, good, keys, JSON, st.booleans())


ISSUE_KEYS = list(Issue("i", "I", "t", "s", True).to_dict())


def _rarely(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten, else any JSON value."""
    return st.integers(0, 9).flatmap(lambda n: JSON if n == 0 else good)


def shaped(tp: Any, wild: bool, depth: int = 0) -> st.SearchStrategy[Any]:
    """JSON values shaped like ``tp``; ``wild`` mixes in wrong values at every level."""
    good = _shaped(tp, wild, depth)
    return _rarely(good) if wild else good


def _shaped(tp: Any, wild: bool, depth: int) -> st.SearchStrategy[Any]:
    if depth > 6 or tp is Any:
        return JSON
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return st.one_of([shaped(a, wild, depth) for a in get_args(tp)])
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin in (list, tuple):
        return st.lists(shaped(get_args(tp)[0], wild, depth + 1), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=3), shaped(get_args(tp)[1], wild, depth + 1),
                               max_size=3)  # fmt: skip
    if tp is type(None):
        return st.none()
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-9, 9)
    if tp in (str, int, bool):
        return {str: st.text(max_size=4), int: st.integers(-(2**40), 2**40),
                bool: st.booleans()}[tp]  # fmt: skip
    if tp is Issue:
        return _issue_dict(wild)
    assert is_dataclass(tp), tp
    hints = typing.get_type_hints(tp)
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in fields(tp):
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        target = optional if has_default else required
        target[f.name] = shaped(hints[f.name], wild, depth + 1)
    whole = st.fixed_dictionaries(required, optional=optional)
    if not wild:
        return whole
    # One time in five a required field may go missing or an unknown one appear.
    spoilt = st.fixed_dictionaries({}, optional={**required, **optional, "unknown_field": LEAF})
    return st.integers(0, 4).flatmap(lambda n: spoilt if n == 0 else whole)


def _outcome(decoder: Any, tp: Any, data: Any) -> tuple[str, str, bytes]:
    try:
        value = decoder(tp, copy.deepcopy(data))
    except ValidationError as exc:
        return ("error", f"{exc.error_code}: {exc.message}", b"")
    return ("ok", repr(value), encode_response(1, value))


CATALOGUE = sorted(
    {(m.params.__name__, m.params) for m in METHODS.values()}
    | {(m.result.__name__, m.result) for m in METHODS.values()}
    | {(e.data.__name__, e.data) for e in EVENTS.values()},
    key=lambda pair: pair[0],
)


@pytest.mark.parametrize(("name", "tp"), CATALOGUE, ids=[name for name, _tp in CATALOGUE])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_catalogue_types_decode_as_before(name: str, tp: type, data: st.DataObject) -> None:
    wild = data.draw(st.booleans(), label="wild")
    value = data.draw(shaped(tp, wild), label=name)
    assert _outcome(decode, tp, value) == _outcome(reference.decode, tp, value)


@settings(max_examples=300, deadline=None)
@given(value=st.booleans().flatmap(_issue_dict) | JSON)
def test_issue_from_dict_as_before(value: Any) -> None:
    def new(_tp: Any, data: Any) -> Issue:
        return Issue.from_dict(data)

    def old(_tp: Any, data: Any) -> Issue:
        return reference.issue_from_dict(data)

    assert _outcome(new, Issue, value) == _outcome(old, Issue, value)
    if isinstance(value, dict) and _outcome(new, Issue, value)[0] == "ok":
        # Timestamps come from a cache on the second decode: still the same value.
        assert _outcome(new, Issue, value) == _outcome(old, Issue, value)


@dataclass(frozen=True)
class Node:
    name: str
    child: Node | None = None
    kids: list[Node] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def _nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"name": "leaf", "kids": [{"name": 7}]}
    for i in range(levels):
        node = {"name": f"n{i}", "child": node} if i % 2 else {"name": f"n{i}", "kids": [node]}
    return node


@pytest.mark.parametrize("levels", [3, 10, 15, 16, 17, 40])
def test_self_referring_and_deep_types_as_before(levels: int) -> None:
    data = _nested(levels)
    assert _outcome(decode, Node, data) == _outcome(reference.decode, Node, data)
    assert _outcome(decode, Node, data)[0] == "error"  # the innermost name is an int


@pytest.mark.parametrize(
    ("tp", "data"),
    [
        (Empty, {}),
        (Empty, {"": 1}),  # a field-less dataclass still refuses unknown keys
        (Empty, []),
        (Node, {"name": "x", "meta": {"k": [1, {"a": None}]}}),
        (dict[str, int], {"a": 1, "b": True}),
        (list[float], [1, 2.5, True]),
        (tuple[str, ...], ["a", "b"]),
        (set[int], [1]),  # unsupported
        (Literal[1, True], True),
        (Literal[1, True], 1),
        (Union[int, None], 3),  # noqa: UP007 - a top-level union needs a __name__
        (Union[int, str], 2.5),  # noqa: UP007
    ],
)
def test_edge_types_as_before(tp: Any, data: Any) -> None:
    assert _outcome(decode, tp, data) == _outcome(reference.decode, tp, data)


def test_board_frame_bytes_unchanged() -> None:
    """A tracker reply like the bench's (5 000 issues, every field used by some) decodes to
    a value whose re-encoded frame has the same SHA-256 with either codec."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    board = [
        build_issue(
            id=f"i{k}",
            identifier=f"R-{k}",
            title=f"t{k}",
            state="Todo",
            dispatchable=k % 7 != 0,
            description="d" if k % 2 else None,
            priority=k % 5 or None,
            labels=["a", "B"][: k % 3],
            url=f"u{k}",
            created_at=t0 + timedelta(seconds=k),
            updated_at=(t0 + timedelta(hours=k)).isoformat() if k % 3 else None,
            native_ref={"n": k},
        )  # fmt: skip
        for k in range(5000)
    ]
    wire = typing.cast(dict[str, Any], _json_round_trip(IssueList(board)))
    new = hashlib.sha256(encode_response(1, decode(IssueList, wire))).hexdigest()
    old = hashlib.sha256(encode_response(1, reference.decode(IssueList, wire))).hexdigest()
    assert new == old
    assert decode(IssueList, wire).issues == board


def _json_round_trip(value: Any) -> Any:
    return json.loads(encode_response(1, value))["result"]
