"""ARCHITECTURE.md is the map the code cites: its invariants and file names must be real.

Modules, tests and docs cite "ARCHITECTURE.md invariant N"; a citation of an invariant the map
does not have (a renumbering, a typo) fails here, as does a source file the map names that
no longer exists.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "ARCHITECTURE.md"
PKG = REPO / "symphonyd"
# Where citations may be: the code, its tests and benchmarks, and every document.
CITING = ("symphonyd", "tests", "bench", "devtools", "docs", "units", "debian", "packaging")
CITING_SUFFIXES = {".py", ".md", ".txt", ".service", ".socket", ".sh", ".toml"}
# "ARCHITECTURE invariant 4", "ARCHITECTURE.md invariants 4 and 5", across a line break too.
CITATION = re.compile(
    r"ARCHITECTURE(?:\.md)?\s+invariants?\s+(\d+(?:\s*(?:,|and)\s*\d+)*)", re.IGNORECASE
)
INVARIANT = re.compile(r"^(\d+)\. \S", re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`\s]+\.py)`")


def _invariants() -> dict[int, str]:
    text = DOC.read_text()
    section = text.split("\n## Invariants\n", 1)[1].split("\n## ", 1)[0]
    return {int(m.group(1)): m.group(0) for m in INVARIANT.finditer(section)}


def _citations_in(text: str) -> list[int]:
    return [int(n) for m in CITATION.finditer(text) for n in re.findall(r"\d+", m.group(1))]


def _citations() -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    files = [REPO / "README.md"]
    for top in CITING:
        files += [p for p in (REPO / top).rglob("*") if p.suffix in CITING_SUFFIXES]
    for path in files:
        own = path == Path(__file__).resolve()  # its examples below are not citations
        if path.is_file() and "__pycache__" not in path.parts and not own:
            rel = str(path.relative_to(REPO))
            found += [(rel, n) for n in _citations_in(path.read_text(errors="replace"))]
    return found


def test_the_invariants_are_numbered_one_to_n() -> None:
    numbers = sorted(_invariants())
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 10


def test_every_cited_invariant_exists() -> None:
    cited = _citations()
    # A control: the code cites the map in many places; none found means the pattern broke.
    assert len({path for path, _ in cited}) >= 10, cited
    known = _invariants()
    unknown = [f"{path}: invariant {n}" for path, n in cited if n not in known]
    assert not unknown, "ARCHITECTURE.md has no such invariant:\n" + "\n".join(unknown)


def test_the_citation_pattern_sees_every_spelling() -> None:
    text = (
        "(ARCHITECTURE invariant 8), ARCHITECTURE.md invariants 4 and 5; "
        "seed 001, ARCHITECTURE\ninvariant 10"
    )
    assert _citations_in(text) == [8, 4, 5, 10]


def test_every_source_file_the_map_names_exists() -> None:
    names = {p.name for p in PKG.rglob("*.py")}
    missing = []
    for span in CODE_SPAN.findall(DOC.read_text()):
        if "/" in span:
            if not (any(PKG.glob(span)) or any(REPO.glob(span))):
                missing.append(span)
        elif span not in names:
            missing.append(span)
    assert not missing, "ARCHITECTURE.md names files that do not exist: " + ", ".join(missing)
