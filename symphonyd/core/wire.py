"""The IPC wire: envelope, frame codec and the registry of methods and events.

Wire format (docs/design/0002-ipc.md): one JSON object per line, at most ``max_frame`` bytes.

    request   {"v": 1, "id": 7, "method": "tracker.fetch_by_ids", "params": {...}}
    response  {"v": 1, "id": 7, "result": {...}}
    error     {"v": 1, "id": 7, "error": {"code": "invalid_params", "message": "..."}}
    event     {"v": 1, "event": "launcher.run_event", "data": {...}}

A method is registered once with :func:`method` (an event with :func:`event`) with its params
and result dataclasses; both ends validate with :func:`symphonyd.core.codec.decode`. The
catalogues live in ``symphonyd.core.api``, one module per serving daemon
(docs/design/0263-ipc-api-modules.md); a method is in :data:`METHODS` once its module is
imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from symphonyd.core.codec import decode, encode
from symphonyd.core.errors import SymphonyError, ValidationError

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB

P = TypeVar("P")
R = TypeVar("R")


class ProtocolError(SymphonyError):
    """A frame broke the wire contract; ``code`` is one of ERROR_CODES."""

    code = "malformed_message"


# Stable error codes of the wire layer (handlers add their own SymphonyError codes).
ERROR_CODES = (
    "frame_too_large",
    "malformed_message",
    "unsupported_version",
    "unknown_method",
    "invalid_params",
    "peer_not_allowed",
    "timeout",
    "unavailable",
    "internal_error",
)


@dataclass(frozen=True)
class MethodSpec(Generic[P, R]):
    name: str
    params: type[P]
    result: type[R]
    doc: str


@dataclass(frozen=True)
class EventSpec(Generic[P]):
    name: str
    data: type[P]
    doc: str


METHODS: dict[str, MethodSpec[Any, Any]] = {}
EVENTS: dict[str, EventSpec[Any]] = {}


def method(name: str, params: type[P], result: type[R], doc: str) -> MethodSpec[P, R]:
    if name in METHODS:
        raise RuntimeError(f"duplicate IPC method {name}")
    spec = MethodSpec(name, params, result, doc)
    METHODS[name] = spec
    return spec


def event(name: str, data: type[P], doc: str) -> EventSpec[P]:
    if name in EVENTS:
        raise RuntimeError(f"duplicate IPC event {name}")
    spec = EventSpec(name, data, doc)
    EVENTS[name] = spec
    return spec


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Response:
    id: int
    result: Any


@dataclass(frozen=True)
class ErrorReply:
    id: int | None
    code: str
    message: str


@dataclass(frozen=True)
class Event:
    event: str
    data: dict[str, Any]


Frame = Request | Response | ErrorReply | Event


def _dump(obj: dict[str, Any]) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (JSON allows "\\ud800") cannot be UTF-8; escaped output round-trips.
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def encode_request(req_id: int, spec: MethodSpec[P, Any], params: P) -> bytes:
    return _dump(
        {"v": PROTOCOL_VERSION, "id": req_id, "method": spec.name, "params": encode(params)}
    )


def encode_response(req_id: int, result: Any) -> bytes:
    return _dump({"v": PROTOCOL_VERSION, "id": req_id, "result": encode(result)})


def encode_error(req_id: int | None, code: str, message: str) -> bytes:
    return _dump({"v": PROTOCOL_VERSION, "id": req_id, "error": {"code": code, "message": message}})


def encode_event(spec: EventSpec[P], data: P) -> bytes:
    return _dump({"v": PROTOCOL_VERSION, "event": spec.name, "data": encode(data)})


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; accepting them would make a reply unencodable later.
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # json.loads(..., kw) rebuilds one


def parse_frame(line: bytes, *, max_frame: int = DEFAULT_MAX_FRAME) -> Frame:
    """Decode one line into a typed frame or raise ProtocolError with a stable code."""
    if len(line) > max_frame:
        raise ProtocolError(
            f"frame of {len(line)} bytes exceeds {max_frame}", code="frame_too_large"
        )
    try:
        obj = _DECODER.decode(line.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and Python's limit on the
        # digits of an integer literal, which a hostile peer reaches with a 5000-digit id.
        raise ProtocolError(f"not a JSON object: {exc.__class__.__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a JSON object")
    if obj.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {obj.get('v')!r}", code="unsupported_version"
        )
    raw_id = obj.get("id")
    req_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    if "method" in obj:
        params = obj.get("params", {})
        if req_id is None or not isinstance(obj["method"], str) or not isinstance(params, dict):
            raise ProtocolError("request needs an integer id, a method name and object params")
        return Request(req_id, obj["method"], params)
    if "result" in obj and req_id is not None:
        return Response(req_id, obj["result"])
    if "error" in obj and isinstance(obj["error"], dict):
        err = obj["error"]
        code, message = err.get("code"), err.get("message")
        if isinstance(code, str) and isinstance(message, str):
            return ErrorReply(req_id, code, message)
    if isinstance(obj.get("event"), str) and isinstance(obj.get("data"), dict):
        return Event(obj["event"], obj["data"])
    raise ProtocolError("frame is neither request, response, error nor event")


def decode_params(spec: MethodSpec[P, Any], params: dict[str, Any]) -> P:
    try:
        return decode(spec.params, params)
    except ValidationError as exc:
        raise ProtocolError(exc.message, code="invalid_params") from None


def decode_result(spec: MethodSpec[Any, R], result: Any) -> R:
    try:
        return decode(spec.result, result)
    except ValidationError as exc:
        raise ProtocolError(f"bad result for {spec.name}: {exc.message}") from None


def decode_event(spec: EventSpec[P], data: dict[str, Any]) -> P:
    try:
        return decode(spec.data, data)
    except ValidationError as exc:
        raise ProtocolError(f"bad data for {spec.name}: {exc.message}") from None
