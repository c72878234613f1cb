from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.nspawn import RELEASES, Container

REPO = Path(__file__).resolve().parents[2]
# The package's end-to-end tests run on every supported Debian release (docs/install.md);
# SYMPHONY_E2E_RELEASES narrows that for a quick local run ("bookworm", "trixie").
RELEASES_UNDER_TEST = tuple(os.environ.get("SYMPHONY_E2E_RELEASES", " ".join(RELEASES)).split())


@pytest.fixture(scope="session")
def deb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [str(REPO / "packaging" / "build-deb.sh"), str(out)], check=True, stdout=subprocess.DEVNULL
    )
    (deb,) = out.glob("symphonyd_*_all.deb")
    return deb


@pytest.fixture(params=RELEASES_UNDER_TEST)
def release(request: pytest.FixtureRequest) -> str:
    release: str = request.param
    if release not in RELEASES:
        raise ValueError(f"SYMPHONY_E2E_RELEASES: unknown release {release!r}")
    return release


@pytest.fixture
def container(tmp_path: Path, release: str) -> Iterator[Container]:
    with Container(tmp_path, release=release) as c:
        yield c
