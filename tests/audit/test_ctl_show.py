"""`symphonyctl audit show` and `audit head` on a real log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.audit.shaping import shape
from symphonyd.audit.store import Pending
from symphonyd.core import audit_events
from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.redact import Redactor
from symphonyd.ctl.main import main
from tests.audit.helpers import CLIENT, Clock, fill, open_store


@pytest.fixture
def log(tmp_path: Path) -> Path:
    clock = Clock("2026-11-20")
    store = open_store(tmp_path, clock)
    events = [
        audit_events.dispatch("id-1", "ABC-1", "run-1", None),
        audit_events.egress(False, "denied.test", 443, issue_id="id-2", identifier="ABC-2"),
        AuditEventIn(type="tool_call", payload={"note": "\x1b[31mred\x1b[0m"}, issue_id="id-1"),
    ]
    store.append([Pending(shape(events[0], Redactor()), CLIENT)])
    clock.day, clock.tick = "2026-11-21", 0
    store.append([Pending(shape(e, Redactor()), CLIENT) for e in events[1:]])
    store.close()
    return tmp_path


def _show(capsys: pytest.CaptureFixture[str], log: Path, *args: str) -> list[str]:
    assert main(["audit", "show", "--dir", str(log), *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_show_filters(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(_show(capsys, log)) == 4
    by_issue = _show(capsys, log, "--issue", "ABC-1")
    assert len(by_issue) == 1 and "dispatch" in by_issue[0]
    assert len(_show(capsys, log, "--issue", "id-1")) == 2
    assert [
        json.loads(x)["type"] for x in _show(capsys, log, "--type", "egress_deny", "--json")
    ] == ["egress_deny"]
    assert len(_show(capsys, log, "--since", "2026-11-21")) == 2
    assert len(_show(capsys, log, "--since", "2026-11-21T00:00:02Z")) == 1


def test_show_never_prints_raw_control_characters(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _show(capsys, log, "--type", "tool_call")
    assert "\x1b" not in "".join(lines)


def test_show_reports_damaged_lines_and_goes_on(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = log / "2026-11-20.ndjson"
    path.write_bytes(b"garbage\n" + path.read_bytes())
    assert main(["audit", "show", "--dir", str(log)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 4
    assert f"{path}:1: not a valid JSON line" in captured.err


def test_head_prints_the_newest_record(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "head", "--dir", str(log)]) == 0
    seq, digest = capsys.readouterr().out.strip().split(":")
    last = json.loads((log / "2026-11-21.ndjson").read_bytes().splitlines()[-1])
    assert (int(seq), digest) == (last["seq"], last["record_hash"])


def test_bad_arguments_are_usage_errors(log: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["audit", "show", "--dir", str(log), "--since", "yesterday-ish"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["audit", "verify", "--dir", str(log), "--checkpoint", "12:nothex"])
    with pytest.raises(SystemExit):
        main(["audit", "verify", "--dir", str(log), "--from", "2026-13-01"])


def test_show_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    fill(tmp_path, ["2026-11-20"], 2000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "symphonyd.ctl", "audit", "show", "--dir", str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert b"genesis" in proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in err
