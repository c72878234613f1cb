from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.ipc_helpers import short_dir


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short private directory for sockets (AF_UNIX paths are limited to 108 bytes)."""
    with short_dir() as path:
        yield path
