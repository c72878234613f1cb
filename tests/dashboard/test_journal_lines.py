"""The real dashboard reads a real journal for the issue page, and only the suite's lines.

The dashboard runs as ``python -m symphonyd.dashboard`` inside the mount namespace of a
systemd-journald of the test's own (tests/audit/journald.py), so python3-systemd's reader
finds that journal at its production path. Outside systemd no process here runs in a suite
unit, so the positive case (a dispatcher decision shown on the page) is proved in the
container suite (tests/e2e/test_suite.py::test_suite_runs_an_issue_end_to_end); this test
proves the journal is read and that a line forged with the issue's field by another program
is not shown.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.audit.journald import own_journald
from tests.dashboard.conftest import _audited
from tests.dashboard.history_data import append_history

pytestmark = [pytest.mark.root]

FORGED = "forged-line-7c1e <script>alert(1)</script>"


def test_issue_page_reads_the_journal_and_ignores_lines_from_outside_the_suite(
    tmp_path: Path,
) -> None:
    with own_journald(tmp_path) as journal:
        send = f"from systemd import journal; journal.send({FORGED!r}, ISSUE_IDENTIFIER='MT-1')"
        subprocess.run([*journal.enter, sys.executable, "-c", send], check=True)
        logged = subprocess.run(
            [
                "journalctl",
                "--directory",
                str(journal.directory),
                "-o",
                "cat",
                "ISSUE_IDENTIFIER=MT-1",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert FORGED in logged  # the line is there to be read
        with _audited(tmp_path / "suite", prefix=journal.enter) as (audit, dashboard, _):
            append_history({name: audit.sock(name) for name in ("dispatcher", "launcher")})
            page = httpx.get(dashboard.base + "/issues/MT-1", timeout=30).text
    assert "Runs (2)" in page
    assert 'id="journal-note"' not in page  # a journal was readable
    assert page.count("No journal lines in this run&#x27;s time window.") == 2
    assert "forged-line-7c1e" not in page  # logged with the field, but by no suite unit
