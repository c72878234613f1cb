from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.nspawn import Container

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def deb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [str(REPO / "packaging" / "build-deb.sh"), str(out)], check=True, stdout=subprocess.DEVNULL
    )
    (deb,) = out.glob("symphonyd_*_all.deb")
    return deb


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    with Container(tmp_path) as c:
        yield c
