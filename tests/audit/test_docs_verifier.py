"""The standalone verifier printed in docs/audit.md must agree with the real one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.audit.helpers import fill

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def _snippet(tmp_path: Path) -> Path:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert code is not None
    script = tmp_path / "verify_snippet.py"
    script.write_text(code.group(1))
    return script


def _run(script: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_doc_snippet_is_short_and_verifies_a_real_log(tmp_path: Path) -> None:
    script = _snippet(tmp_path)
    assert len(script.read_text().strip().splitlines()) <= 20
    log = tmp_path / "audit"
    fill(log, ["2026-11-20", "2026-11-21"], 4)
    result = _run(script, log)
    assert (result.returncode, result.stdout.strip()) == (0, "ok 9 records")


def test_doc_snippet_catches_a_deleted_line(tmp_path: Path) -> None:
    script = _snippet(tmp_path)
    log = tmp_path / "audit"
    fill(log, ["2026-11-20", "2026-11-21"], 4)
    path = log / "2026-11-21.ndjson"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:1] + lines[2:]))
    result = _run(script, log)
    assert result.returncode == 1 and f"broken at {path}:2" in result.stderr
