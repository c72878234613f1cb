"""Messages every daemon's API uses: the empty value, health, token totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symphonyd.core.wire import method


@dataclass(frozen=True)
class Empty:
    pass


@dataclass(frozen=True)
class Health:
    daemon: str
    version: str
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


HEALTH = method("health", Empty, Health, "Liveness and version of the serving daemon.")


@dataclass(frozen=True)
class TokenTotals:
    """Absolute token counts of a run (launcher events) or a row (dispatcher snapshot)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
