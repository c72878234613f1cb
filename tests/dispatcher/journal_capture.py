"""What the dispatcher would hand journald: its records through the production
``JournalHandler`` (field mapping included), with only the final socket write replaced."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from symphonyd.runtime.logging import JournalHandler


class JournalCapture(JournalHandler):
    def __init__(self) -> None:
        super().__init__("dispatcher", logging.NullHandler())
        self.entries: list[dict[str, str]] = []

    def _deliver(self, message: str, fields: dict[str, Any]) -> None:
        self.entries.append({"MESSAGE": message, **{k: str(v) for k, v in fields.items()}})

    def events(self, event: str, **match: str) -> list[dict[str, str]]:
        """Entries with SYMPHONY_EVENT ``event`` whose fields equal ``match``."""
        return [
            e
            for e in self.entries
            if e.get("SYMPHONY_EVENT") == event and all(e.get(k) == v for k, v in match.items())
        ]


@contextlib.contextmanager
def journal_capture() -> Iterator[JournalCapture]:
    """Capture ``symphonyd.dispatcher`` at INFO, as ``setup_logging`` configures the daemon."""
    logger = logging.getLogger("symphonyd.dispatcher")
    handler = JournalCapture()
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
