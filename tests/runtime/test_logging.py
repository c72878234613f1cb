"""Structured logging: key=value lines that cannot be forged, journald fields, sink failure."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.runtime.logging import format_kv, format_value, journal_field_name, log_event
from tests.runtime.log_child import HOSTILE_TITLE

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        ("MT-7", "MT-7"),
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("line\nnext", '"line\\nnext"'),
        ("cr\rlf", '"cr\\rlf"'),
        ("esc\x1b[31m", '"esc\\u001b[31m"'),
        ("back\\slash", '"back\\\\slash"'),
        ("sep\u2028x", '"sep\\u2028x"'),
        ("", '""'),
        (None, "null"),
        (True, "true"),
        (3, "3"),
        (1.5, "1.5"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_format_kv_keeps_order_and_escapes_bad_keys() -> None:
    assert format_kv({"event": "x", "outcome": "ok"}) == "event=x outcome=ok"
    assert format_kv({"bad key=1": "v"}) == 'bad_key_"bad key=1"=v'


def test_log_event_produces_one_parseable_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log_event(
        logging.getLogger("t"),
        "dispatch",
        outcome="started",
        issue_id="abc",
        issue_identifier="MT-1",
        title=HOSTILE_TITLE,
        skipped=None,
    )
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message and "\x1b" not in message
    assert message.startswith("event=dispatch outcome=started issue_id=abc issue_identifier=MT-1 ")
    assert "skipped" not in message
    assert record.symphony_fields["title"] == HOSTILE_TITLE  # type: ignore[attr-defined]


def test_journal_field_names() -> None:
    assert journal_field_name("issue_id") == "ISSUE_ID"
    assert journal_field_name("message") is None  # reserved: would replace MESSAGE
    assert journal_field_name("_pid") is None  # trusted journal fields start with _
    assert journal_field_name("a-b") is None
    assert journal_field_name("x" * 65) is None


def _check_hostile_lines(lines: list[str]) -> None:
    # Each record is exactly one line; nothing the attacker wrote starts a line of its own.
    assert len(lines) == 3, lines
    assert all(" level=" not in ln.split(" ", 1)[0] for ln in lines)
    assert not any(ln.startswith(("level=error", "event=forged")) for ln in lines)
    dispatch = lines[0]
    assert "event=dispatch outcome=started issue_id=abc-1 issue_identifier=MT-7" in dispatch
    assert "session_id=s-1" in dispatch
    assert 'title="Fix it\\nlevel=error event=forged' in dispatch
    assert 'msg="free text with a newline\\nlevel=error forged=yes"' in lines[1]
    assert 'msg="handler failed" exc=' in lines[2]
    assert "boom\\nline two" in lines[2]


def test_stderr_sink_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.runtime.log_child", "stderr"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    _check_hostile_lines(lines)
    assert all(" level=" in ln and " daemon=tracker " in ln for ln in lines)
    assert " level=warning " in lines[1]


@pytest.mark.root
def test_journal_sink_fields_and_failure_fallback() -> None:
    # A private mount namespace with its own /run: the child plays journald there, so the
    # host's journal (if any) is neither needed nor touched.
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount -t tmpfs tmpfs /run && exec "$0" -m tests.runtime.log_child journal',
            sys.executable,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["handler"] == "JournalHandler"
    first, warning, failure, bound, own = result["received"]
    assert first["MESSAGE"].startswith("event=dispatch outcome=started issue_id=abc-1")
    assert "\n" not in first["MESSAGE"]
    assert first["SYMPHONY_EVENT"] == "dispatch"
    assert first["ISSUE_ID"] == "abc-1"
    assert first["ISSUE_IDENTIFIER"] == "MT-7"
    assert first["SESSION_ID"] == "s-1"
    assert first["TITLE"] == HOSTILE_TITLE  # binary-safe field: the raw value, not a line
    assert first["SYMPHONY_DAEMON"] == "dispatcher"
    assert first["SYSLOG_IDENTIFIER"] == "symphony-dispatcher"
    assert first["PRIORITY"] == "6"
    assert first["CODE_FILE"].endswith("log_child.py")
    assert warning["PRIORITY"] == "4"
    assert failure["PRIORITY"] == "3"
    assert "boom" in failure["EXCEPTION_TEXT"]
    assert "ISSUE_IDENTIFIER" not in warning  # nothing bound outside log_context
    # log_context: a free-text line gets the bound issue fields (symphonyctl logs finds it).
    assert (bound["ISSUE_ID"], bound["ISSUE_IDENTIFIER"]) == ("abc-4", "MT-8"), bound
    assert bound["MESSAGE"].endswith("issue_id=abc-4 issue_identifier=MT-8"), bound
    assert (own["ISSUE_ID"], own["ISSUE_IDENTIFIER"]) == ("abc-4", "MT-9"), own
    # After the journal broke: one warning, then the records, on stderr (SPEC 13.2).
    lines = proc.stderr.splitlines()
    assert len([ln for ln in lines if "event=log_sink_failed sink=journal" in ln]) == 1
    assert any("outcome=retrying issue_id=abc-2" in ln for ln in lines)
    assert any("outcome=failed issue_id=abc-3" in ln for ln in lines)
