"""Typed decoding of JSON values into dataclasses, used to validate every IPC message.

Supports the field types the message module uses: str, int, float, bool, None, unions,
``Literal``, ``list``/``tuple[T, ...]``, ``dict[str, T]``, nested dataclasses, classes with a
``from_dict`` classmethod (e.g. Issue) and ``Any`` (any JSON value). Unknown keys are
rejected so a typo in a sender is an error, not a silently dropped field.

Each type is compiled once into a decoder function (the type's reflection, ``get_origin``,
``get_type_hints`` and ``dataclasses.fields``, runs once per type, not once per value), and
the path in an error message (``Outer.items[0].n``) is built only when a value fails: a
dispatcher tick decodes every issue on the board, so per-value work is what costs
(bench/README.md, remote_dispatch.py).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from symphonyd.core.errors import ValidationError

T = TypeVar("T")
_MAX_DEPTH = 32
_SCALARS = (str, int, float, bool)

# A compiled decoder: (JSON value, nesting depth) -> the typed value, or raises _Invalid.
Decoder = Callable[[Any, int], Any]


def decode(cls: type[T], data: Any) -> T:
    """Build ``cls`` from a decoded JSON value or raise ValidationError naming the bad field."""
    where = cls.__name__
    try:
        return typing.cast(T, _decoder(cls)(data, 0))
    except _Invalid as exc:
        raise ValidationError(where + "".join(reversed(exc.path)) + exc.tail) from None


def encode(value: Any) -> Any:
    """Dataclasses (and objects with ``to_dict``) to plain JSON values."""
    if value is None or type(value) in _SCALARS:  # fast path: most leaves are scalars
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


class _Invalid(Exception):  # internal: decode() turns it into a ValidationError
    """A value failed below the top. ``tail`` ends the message (": expected str"); ``path``
    collects the segments (".items", "[0]") innermost first as it travels up."""

    def __init__(self, tail: str) -> None:
        super().__init__(tail)
        self.tail = tail
        self.path: list[str] = []


def _too_deep(depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _Invalid(": nested too deeply")


def _decoder(tp: Any) -> Decoder:
    try:
        hash(tp)
    except TypeError:
        return _compile(tp)
    return _compiled(tp)


@cache
def _compiled(tp: Any) -> Decoder:
    return _compile(tp)


def _compile(tp: Any) -> Decoder:
    """The decoder for ``tp``; the checks run in the order the rules above list them."""
    if tp is Any:
        return _decode_any
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _union(tp)
    if origin is Literal:
        return _literal(tp)
    if origin in (list, tuple):
        return _sequence(tp, origin)
    if origin is dict:
        return _mapping(tp)
    if tp is type(None):
        return _decode_none
    if tp in _SCALARS:
        return _scalar(tp)
    if isinstance(tp, type) and hasattr(tp, "from_dict"):
        return _from_dict(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp)

    def unsupported(data: Any, depth: int) -> Any:
        _too_deep(depth)
        raise _Invalid(f": unsupported type {tp!r}")

    return unsupported


def _decode_any(data: Any, depth: int) -> Any:
    _too_deep(depth)
    return data


def _decode_none(data: Any, depth: int) -> Any:
    _too_deep(depth)
    if data is not None:
        raise _Invalid(": expected null")
    return None


def _scalar(tp: type) -> Decoder:
    expected = f": expected {tp.__name__}"

    def decode_scalar(data: Any, depth: int) -> Any:
        if type(data) is tp:  # the common exact-type leaf, at any depth
            return data
        _too_deep(depth)
        if tp is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if not isinstance(data, tp) or (tp is not bool and isinstance(data, bool)):
            raise _Invalid(expected)
        return data

    return decode_scalar


def _union(tp: Any) -> Decoder:
    options = [_decoder(option) for option in get_args(tp)]

    def decode_union(data: Any, depth: int) -> Any:
        _too_deep(depth)
        last: Exception | None = None
        for option in options:
            try:
                return option(data, depth)
            except (_Invalid, ValidationError) as exc:
                last = exc
        if len(options) == 1 and last is not None:
            raise last
        raise _Invalid(": no variant matched")

    return decode_union


def _literal(tp: Any) -> Decoder:
    allowed = get_args(tp)
    expected = f": expected one of {list(allowed)}"

    def decode_literal(data: Any, depth: int) -> Any:
        _too_deep(depth)
        if data not in allowed or isinstance(data, bool) != any(
            isinstance(a, bool) for a in allowed if a == data
        ):
            raise _Invalid(expected)
        return data

    return decode_literal


def _sequence(tp: Any, origin: Any) -> Decoder:
    args = get_args(tp)
    item_t = args[0] if args else Any
    item = _decoder(item_t)
    make: Callable[[list[Any]], Any] = tuple if origin is tuple else list
    scalar_items = item_t in _SCALARS

    def decode_sequence(data: Any, depth: int) -> Any:
        _too_deep(depth)
        if not isinstance(data, list):
            raise _Invalid(": expected a list")
        if scalar_items and all(type(v) is item_t for v in data):
            return make(data)  # skip per-item paths
        below = depth + 1
        items = []
        for i, v in enumerate(data):
            try:
                items.append(item(v, below))
            except _Invalid as exc:
                exc.path.append(f"[{i}]")
                raise
        return items if make is list else make(items)

    return decode_sequence


def _mapping(tp: Any) -> Decoder:
    _key_t, val_t = get_args(tp)
    value = _decoder(val_t)

    def decode_mapping(data: Any, depth: int) -> Any:
        _too_deep(depth)
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise _Invalid(": expected an object")
        below = depth + 1
        out = {}
        for k, v in data.items():
            try:
                out[k] = value(v, below)
            except _Invalid as exc:
                exc.path.append(f".{k}")
                raise
        return out

    return decode_mapping


def _from_dict(tp: Any) -> Decoder:
    build = tp.from_dict

    def decode_from_dict(data: Any, depth: int) -> Any:
        _too_deep(depth)
        try:
            return build(data)
        except ValidationError as exc:
            raise _Invalid(f": {exc.message}") from None

    return decode_from_dict


def _dataclass(tp: type) -> Decoder:
    # Fields are compiled at the first value, not here: a dataclass may refer to itself,
    # and its annotations resolve (get_type_hints) only once every name they use exists.
    # One tuple, set in one assignment: another thread decoding at the same time sees
    # either nothing yet (and builds its own) or both parts.
    built: tuple[list[tuple[str, Decoder, bool]], frozenset[str]] | None = None

    def decode_dataclass(data: Any, depth: int) -> Any:
        nonlocal built
        _too_deep(depth)
        if not isinstance(data, dict):
            raise _Invalid(": expected an object")
        if built is None:
            fields = _dataclass_plan(tp)
            built = (fields, frozenset(name for name, _d, _r in fields))
        plan, names = built
        if not names.issuperset(data):
            raise _Invalid(f": unknown field(s) {sorted(set(data) - names)}")
        below = depth + 1
        kwargs: dict[str, Any] = {}
        for name, field_decoder, required in plan:
            if name in data:
                try:
                    kwargs[name] = field_decoder(data[name], below)
                except _Invalid as exc:
                    exc.path.append(f".{name}")
                    raise
            elif required:
                raise _Invalid(f": missing field {name!r}")
        return tp(**kwargs)

    return decode_dataclass


def _dataclass_plan(tp: type) -> list[tuple[str, Decoder, bool]]:
    """(field name, its decoder, whether it is required) for each field, in order."""
    hints = typing.get_type_hints(tp)
    return [
        (
            f.name,
            _decoder(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(tp)
    ]
