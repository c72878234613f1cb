"""docs/security.md may only cite proofs that exist.

Each control row names the test that would fail if the control broke. A claim must not
outlive its proof: every test name and test file a row cites must exist, and every source
file it names as the place of enforcement must exist too.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "security.md"
TEST_NAME = re.compile(r"^test_[A-Za-z0-9_]+$")
TEST_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(test_[A-Za-z0-9_]+)\s*\(", re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`]+)`")


def _rows() -> list[tuple[int, list[str]]]:
    """(line number, cells) of every table row below a header that has a 'proved by' column."""
    rows: list[tuple[int, list[str]]] = []
    proved_col: int | None = None
    for number, line in enumerate(DOC.read_text().splitlines(), start=1):
        if not line.startswith("|"):
            proved_col = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if proved_col is None:
            lowered = [c.lower() for c in cells]
            if "proved by" in lowered:
                proved_col = lowered.index("proved by")
            continue
        if set(line.replace("|", "").strip()) <= {"-", " "}:
            continue  # the separator line
        rows.append((number, cells))
    return rows


@cache
def _defined_tests() -> dict[str, set[Path]]:
    found: dict[str, set[Path]] = {}
    for path in (REPO / "tests").rglob("*.py"):
        for name in TEST_DEF.findall(path.read_text()):
            found.setdefault(name, set()).add(path.relative_to(REPO))
    return found


def _citations() -> list[tuple[int, str]]:
    cited: list[tuple[int, str]] = []
    for number, cells in _rows():
        for cell in cells:
            for span in CODE_SPAN.findall(cell):
                cited.append((number, span))
    return cited


def test_the_document_has_control_tables() -> None:
    # A control: if the table format changed, the checks below would pass vacuously.
    assert len(_rows()) >= 40
    assert sum(1 for _, span in _citations() if TEST_NAME.match(span)) >= 50


def test_every_cited_test_exists() -> None:
    defined = _defined_tests()
    missing = [
        f"docs/security.md:{line}: {span}"
        for line, span in _citations()
        if TEST_NAME.match(span) and span not in defined
    ]
    assert not missing, "tests cited as proof that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("prefix", ["tests/", "symphonyd/", "units/", "policy/", "debian/"])
def test_every_cited_path_exists(prefix: str) -> None:
    missing = []
    for line, span in _citations():
        for word in span.split():
            path = word.rstrip(",;:").split("::")[0]
            if path.startswith(prefix) and "*" not in path and not (REPO / path).exists():
                missing.append(f"docs/security.md:{line}: {path}")
    assert not missing, "paths cited that do not exist:\n" + "\n".join(missing)
