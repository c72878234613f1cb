"""Fixtures: a dispatcher double on a real Unix socket and a real dashboard process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dashboard.double import DispatcherDouble
from tests.dashboard.harness import DashboardProcess, short_dir


@dataclass
class Running:
    dispatcher: DispatcherDouble
    dashboard: DashboardProcess
    dir: Path

    @property
    def base(self) -> str:
        return self.dashboard.base

    @property
    def origin(self) -> str:
        return self.dashboard.base


@pytest.fixture
def running() -> Iterator[Running]:
    with (
        short_dir() as d,
        DispatcherDouble(d / "disp.sock") as dispatcher,
        DashboardProcess(d / "disp.sock", None, d / "dashboard.log") as dashboard,
    ):
        yield Running(dispatcher, dashboard, d)
