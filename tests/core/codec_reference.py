"""The codec and Issue.from_dict as they were before they were compiled and inlined (commit
dc1d402), kept verbatim as the oracle for tests/core/test_codec_compiled.py: the fast
versions must give the same value or the same error message for every input."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from symphonyd.core.errors import ValidationError
from symphonyd.core.issue import BlockerRef, Issue, parse_timestamp

T = TypeVar("T")
_MAX_DEPTH = 32
_SCALARS = (str, int, float, bool)


def decode(cls: type[T], data: Any) -> T:
    return typing.cast(T, _decode(cls, data, cls.__name__, 0))


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


def issue_from_dict(data: Any) -> Issue:
    if not isinstance(data, Mapping):
        raise ValidationError("issue must be an object")
    d: Mapping[str, Any] = data
    blockers = d.get("blocked_by", [])
    if not isinstance(blockers, list) or not all(isinstance(b, Mapping) for b in blockers):
        raise ValidationError("issue.blocked_by must be a list of objects")
    labels = d.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValidationError("issue.labels must be a list of strings")
    native_ref = d.get("native_ref")
    if native_ref is not None and not isinstance(native_ref, dict):
        raise ValidationError("issue.native_ref must be an object or null")
    dispatchable = d.get("dispatchable")
    if not isinstance(dispatchable, bool):
        raise ValidationError("issue.dispatchable must be a boolean")
    priority = d.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise ValidationError("issue.priority must be an integer or null")
    return Issue(
        id=_required_str(d, "id"),
        identifier=_required_str(d, "identifier"),
        title=_required_str(d, "title"),
        state=_required_str(d, "state"),
        dispatchable=dispatchable,
        description=_optional_str(d, "description"),
        priority=priority,
        branch_name=_optional_str(d, "branch_name"),
        url=_optional_str(d, "url"),
        assignee_id=_optional_str(d, "assignee_id"),
        labels=tuple(labels),
        blocked_by=tuple(
            BlockerRef(
                id=_optional_str(b, "id"),
                identifier=_optional_str(b, "identifier"),
                state=_optional_str(b, "state"),
            )
            for b in blockers
        ),
        created_at=_strict_timestamp(d.get("created_at"), "created_at"),
        updated_at=_strict_timestamp(d.get("updated_at"), "updated_at"),
        native_ref=native_ref,
    )


def _required_str(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"issue.{key} must be a non-empty string")
    return value


def _optional_str(d: Mapping[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"issue.{key} must be a string or null")
    return value


def _strict_timestamp(raw: Any, key: str) -> datetime | None:
    if raw is None:
        return None
    parsed = parse_timestamp(raw)
    if parsed is None:
        raise ValidationError(f"issue.{key} must be an RFC 3339 timestamp or null")
    return parsed
