"""Typed readers for raw config values (workflow front matter and host config).

Every reader takes the dotted field name so a bad value produces a ConfigError an operator can
act on ("agent.max_turns: must be a positive integer, got 0"). Values echoed in messages are
shortened; callers must not pass secret-bearing fields to them (tracker.provider is never read
through here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from symphonyd.core.errors import ConfigError, SymphonyError

_ECHO_LIMIT = 60
# `$NAME` or `${NAME}` as the whole value; nothing else is an environment reference.
_ENV_REF = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,18}")
# Upper bounds keep values usable by every consumer: durations (keys ending in `_ms`) fit the
# 32-bit millisecond timers of poll()/select() (about 24.8 days), other integers stay exact
# in JSON (IPC, dashboard).
MAX_DURATION_MS = 2**31 - 1
MAX_INT = 2**53 - 1


def decode_bounded(
    data: bytes, *, limit: int, what: str, error: Callable[[str], SymphonyError]
) -> str:
    """UTF-8 text (a leading BOM dropped) of a config file at most ``limit`` bytes long.

    Callers read ``limit + 1`` bytes so an oversized file is refused rather than truncated.
    """
    if len(data) > limit:
        raise error(f"{what} is larger than {limit} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not valid UTF-8 (byte {exc.start})") from None


def echo(value: Any) -> str:
    """A short repr of a bad value for error messages."""
    text = repr(value)
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 3] + "..."


def env_ref_name(value: Any) -> str | None:
    """The variable name when ``value`` is exactly ``$NAME`` or ``${NAME}``, else None."""
    if not isinstance(value, str):
        return None
    match = _ENV_REF.fullmatch(value.strip())
    if match is None:
        return None
    return match.group(1) or match.group(2)


def section(raw: Mapping[Any, Any], name: str, where: str | None = None) -> Mapping[Any, Any]:
    """A nested map; absent or null means empty, any other non-map is an error."""
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        field = where or name
        raise ConfigError(f"{field}: must be a map, got {echo(value)}", field=field)
    return value


def opt_int(raw: Mapping[Any, Any], key: str, field: str, *, minimum: int | None) -> int | None:
    """An integer (or a decimal string of one) at least ``minimum``; null/absent is None."""
    value = raw.get(key)
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    limit = MAX_DURATION_MS if field.endswith("_ms") else MAX_INT
    if number is not None and abs(number) > limit:
        raise ConfigError(f"{field}: must be at most {limit}, got {echo(value)}", field=field)
    if number is None or (minimum is not None and number < minimum):
        if minimum == 1:
            want = "a positive integer"
        elif minimum == 0:
            want = "a non-negative integer"
        else:
            want = "an integer"
        raise ConfigError(f"{field}: must be {want}, got {echo(value)}", field=field)
    return number


def req_int(
    raw: Mapping[Any, Any], key: str, field: str, default: int, *, minimum: int | None
) -> int:
    value = opt_int(raw, key, field, minimum=minimum)
    return default if value is None else value


def int_in_range(raw: Mapping[Any, Any], key: str, field: str, low: int, high: int) -> int | None:
    value = opt_int(raw, key, field, minimum=None)
    if value is not None and not low <= value <= high:
        raise ConfigError(f"{field}: must be between {low} and {high}, got {value}", field=field)
    return value


def opt_str(raw: Mapping[Any, Any], key: str, field: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{field}: must be a string, got {echo(value)}", field=field)
    return value


def req_str(raw: Mapping[Any, Any], key: str, field: str, default: str) -> str:
    value = opt_str(raw, key, field)
    return default if value is None else value


def opt_bool(raw: Mapping[Any, Any], key: str, field: str, default: bool) -> bool:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{field}: must be true or false, got {echo(value)}", field=field)
    return value


def str_list(raw: Mapping[Any, Any], key: str, field: str) -> tuple[str, ...] | None:
    """A list of strings; a single string is refused so `active_states: Todo` is caught."""
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{field}: must be a list of strings, got {echo(value)}", field=field)
    return tuple(value)


def choice(
    raw: Mapping[Any, Any], key: str, field: str, default: str, allowed: tuple[str, ...]
) -> str:
    value = req_str(raw, key, field, default).strip().lower()
    if value not in allowed:
        raise ConfigError(
            f"{field}: must be one of {', '.join(allowed)}, got {echo(value)}", field=field
        )
    return value
