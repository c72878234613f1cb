"""Typed decoding of JSON values into dataclasses, used to validate every IPC message.

Supports the field types the message module uses: str, int, float, bool, None, unions,
``Literal``, ``list``/``tuple[T, ...]``, ``dict[str, T]``, nested dataclasses, classes with a
``from_dict`` classmethod (e.g. Issue) and ``Any`` (any JSON value). Unknown keys are
rejected so a typo in a sender is an error, not a silently dropped field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from symphonyd.core.errors import ValidationError

T = TypeVar("T")
_MAX_DEPTH = 32
_SCALARS = (str, int, float, bool)


def decode(cls: type[T], data: Any) -> T:
    """Build ``cls`` from a decoded JSON value or raise ValidationError naming the bad field."""
    return typing.cast(T, _decode(cls, data, cls.__name__, 0))


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


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, data: Any, where: str, depth: int) -> Any:
    if tp in _SCALARS and type(data) is tp:  # fast path for the common exact-type leaf
        return data
    if depth > _MAX_DEPTH:
        raise ValidationError(f"{where}: nested too deeply")
    if tp is Any:
        return data
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _decode_union(tp, data, where, depth)
    if origin is Literal:
        if data not in get_args(tp) or isinstance(data, bool) != any(
            isinstance(a, bool) for a in get_args(tp) if a == data
        ):
            raise ValidationError(f"{where}: expected one of {list(get_args(tp))}")
        return data
    if origin in (list, tuple):
        return _decode_sequence(tp, origin, data, where, depth)
    if origin is dict:
        key_t, val_t = get_args(tp)
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ValidationError(f"{where}: expected an object")
        return {k: _decode(val_t, v, f"{where}.{k}", depth + 1) for k, v in data.items()}
    if tp is type(None):
        if data is not None:
            raise ValidationError(f"{where}: expected null")
        return None
    if tp in (str, int, float, bool):
        return _decode_scalar(tp, data, where)
    if isinstance(tp, type) and hasattr(tp, "from_dict"):
        try:
            return tp.from_dict(data)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc.message}") from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data, where, depth)
    raise ValidationError(f"{where}: unsupported type {tp!r}")


def _decode_union(tp: Any, data: Any, where: str, depth: int) -> Any:
    errors: list[str] = []
    for option in get_args(tp):
        try:
            return _decode(option, data, where, depth)
        except ValidationError as exc:
            errors.append(exc.message)
    raise ValidationError(errors[-1] if len(errors) == 1 else f"{where}: no variant matched")


def _decode_sequence(tp: Any, origin: Any, data: Any, where: str, depth: int) -> Any:
    if not isinstance(data, list):
        raise ValidationError(f"{where}: expected a list")
    args = get_args(tp)
    item_t = args[0] if args else Any
    if item_t in _SCALARS and all(type(v) is item_t for v in data):
        return tuple(data) if origin is tuple else list(data)  # skip per-item paths
    items = [_decode(item_t, v, f"{where}[{i}]", depth + 1) for i, v in enumerate(data)]
    return tuple(items) if origin is tuple else items


def _decode_scalar(tp: type, data: Any, where: str) -> Any:
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if not isinstance(data, tp) or (tp is not bool and isinstance(data, bool)):
        raise ValidationError(f"{where}: expected {tp.__name__}")
    return data


def _decode_dataclass(tp: type, data: Any, where: str, depth: int) -> Any:
    if not isinstance(data, dict):
        raise ValidationError(f"{where}: expected an object")
    hints = _hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValidationError(f"{where}: unknown field(s) {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _decode(hints[name], data[name], f"{where}.{name}", depth + 1)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValidationError(f"{where}: missing field {name!r}")
    return tp(**kwargs)
