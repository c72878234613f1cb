"""A credential that cannot be printed by accident.

``str``, ``repr``, ``format`` (f-strings, ``%``, ``str.format``, logging arguments) all give
``Secret('***')`` / ``***``; only ``.reveal()`` returns the value, so every place that uses the
real value is greppable. It refuses pickling and JSON encoding so it cannot be written to a
snapshot or the audit log by a generic serializer.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn, final

REDACTED = "***"


@final
class Secret:
    __slots__ = ("__value",)
    __value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        object.__setattr__(self, "_Secret__value", value)

    def reveal(self) -> str:
        return self.__value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return format(REDACTED, spec)

    def __bool__(self) -> bool:
        return bool(self.__value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.__value.encode(), other.__value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("a Secret cannot be serialised")
