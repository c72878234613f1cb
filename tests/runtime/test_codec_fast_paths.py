"""The codec's scalar fast paths (added for IPC throughput) keep its strictness."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from symphonyd.core.codec import decode, encode
from symphonyd.core.errors import ValidationError


@dataclass(frozen=True)
class Lists:
    ints: list[int]
    floats: list[float]
    names: tuple[str, ...] = ()
    flag: bool = False


def test_exact_types_round_trip() -> None:
    value = Lists([1, 2], [1.5], ("a", "b"), True)
    assert decode(Lists, encode(value)) == value
    assert isinstance(decode(Lists, encode(value)).names, tuple)


def test_ints_still_widen_to_float() -> None:
    decoded = decode(Lists, {"ints": [], "floats": [1, 2.5]})
    assert decoded.floats == [1.0, 2.5]
    assert all(type(f) is float for f in decoded.floats)


@pytest.mark.parametrize(
    "data",
    [
        {"ints": [1, True], "floats": []},  # bool is not an int on the wire
        {"ints": [1.0], "floats": []},
        {"ints": [], "floats": [True]},
        {"ints": [], "floats": [], "names": ["a", 1]},
        {"ints": [], "floats": [], "flag": 1},
        {"ints": "12", "floats": []},
    ],
)
def test_wrong_leaf_types_are_still_rejected(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        decode(Lists, data)
