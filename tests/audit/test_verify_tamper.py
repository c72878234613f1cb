"""Every tamper case of the issue, checked through `symphonyctl audit verify` itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symphonyd.core.audit_chain import record_line, seal
from symphonyd.ctl.main import main
from tests.audit.helpers import fill

DAYS = ["2026-11-20", "2026-11-21", "2026-11-22"]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    # 5 records a day; the genesis makes the first file 6 lines long.
    fill(tmp_path, DAYS, 5)
    return tmp_path


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["audit", "verify", *args])
    return code, capsys.readouterr().out.strip()


def _file(log: Path, day: str) -> Path:
    return log / f"{day}.ndjson"


def _rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_intact_log_verifies(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _verify(capsys, "--dir", str(log)) == (0, "ok 16 records")


def test_edited_byte(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(log, "2026-11-21")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"n":7', b'"n":8')
    _rewrite(path, lines)
    code, out = _verify(capsys, "--dir", str(log))
    assert code == 1
    assert out.startswith(f"broken at {path}:3: record_hash does not match")


def test_edit_that_breaks_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(log, "2026-11-20")
    data = bytearray(path.read_bytes())
    data[data.index(b"dispatch") - 2] ^= 0x01  # flip a bit in the quote before "type"
    path.write_bytes(bytes(data))
    code, out = _verify(capsys, "--dir", str(log))
    assert code == 1 and out.startswith(f"broken at {path}:2: ")


def test_deleted_line(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(log, "2026-11-21")
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[1]
    _rewrite(path, lines)
    code, out = _verify(capsys, "--dir", str(log))
    assert (code, out) == (
        1,
        f"broken at {path}:2: seq 8 where 7 was expected "
        "(records missing, reordered or duplicated)",
    )


def test_swapped_lines(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(log, "2026-11-22")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]
    _rewrite(path, lines)
    code, out = _verify(capsys, "--dir", str(log))
    assert code == 1 and out.startswith(f"broken at {path}:4: seq 15 where 14 was expected")


def test_truncated_mid_line(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(log, "2026-11-21")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    code, out = _verify(capsys, "--dir", str(log))
    assert (code, out) == (
        1,
        f"broken at {path}:5: truncated record (line has no trailing newline)",
    )


def test_truncated_at_line_boundary(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(log, "2026-11-21")
    lines = path.read_bytes().splitlines(keepends=True)
    _rewrite(path, lines[:3])
    code, out = _verify(capsys, "--dir", str(log))
    nxt = _file(log, "2026-11-22")
    assert code == 1 and out.startswith(f"broken at {nxt}:1: seq 11 where 9 was expected")


def test_deleted_middle_day_file(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _file(log, "2026-11-21").unlink()
    code, out = _verify(capsys, "--dir", str(log))
    nxt = _file(log, "2026-11-22")
    assert code == 1 and out.startswith(f"broken at {nxt}:1: seq 11 where 6 was expected")


def test_deleted_first_day_file(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _file(log, "2026-11-20").unlink()
    code, out = _verify(capsys, "--dir", str(log))
    first = _file(log, "2026-11-21")
    assert (code, out) == (
        1,
        f"broken at {first}:1: chain does not start with the genesis record (seq 0)",
    )


def test_forged_line_with_recomputed_hash(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(log, "2026-11-22")
    last = json.loads(path.read_bytes().splitlines()[-1])
    forged = dict(last, seq=last["seq"] + 1, payload={"n": 999}, previous_hash="f" * 64)
    forged["ts"] = last["ts"]
    with path.open("ab") as fh:
        fh.write(record_line(seal(forged)))
    code, out = _verify(capsys, "--dir", str(log))
    assert (code, out) == (
        1,
        f"broken at {path}:6: previous_hash does not link to the record before it",
    )


def test_forged_line_rechained_is_caught_by_checkpoint(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An attacker who rewrites the newest record and recomputes hashes from there on
    # passes the chain check; a head copied off-host earlier still exposes it.
    assert main(["audit", "head", "--dir", str(log)]) == 0
    checkpoint = capsys.readouterr().out.strip()
    path = _file(log, "2026-11-22")
    lines = path.read_bytes().splitlines(keepends=True)
    last = json.loads(lines[-1])
    lines[-1] = record_line(seal(dict(last, payload={"n": "rewritten"})))
    _rewrite(path, lines)
    assert _verify(capsys, "--dir", str(log)) == (0, "ok 16 records")
    code, out = _verify(capsys, "--dir", str(log), "--checkpoint", checkpoint)
    assert (code, out) == (
        4,
        f"rewritten at {path}:5: record 15 differs from the checkpoint (history rewritten)",
    )


def test_truncated_newest_records_caught_by_checkpoint(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["audit", "head", "--dir", str(log)])
    checkpoint = capsys.readouterr().out.strip()
    path = _file(log, "2026-11-22")
    _rewrite(path, path.read_bytes().splitlines(keepends=True)[:2])
    assert _verify(capsys, "--dir", str(log))[0] == 0  # undetectable without a checkpoint
    code, out = _verify(capsys, "--dir", str(log), "--checkpoint", checkpoint)
    assert code == 4
    assert out.startswith(
        f"truncated at {path}:3: chain ends at seq 12 but the checkpoint has seq 15"
    )


def test_day_file_renamed(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _file(log, "2026-11-22").rename(log / "2026-11-23.ndjson")
    code, out = _verify(capsys, "--dir", str(log))
    assert code == 1
    assert out.startswith(f"broken at {log / '2026-11-23.ndjson'}:1: record of 2026-11-22")


def test_range_verification_anchors_on_first_record(
    log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _verify(capsys, "--dir", str(log), "--from", "2026-11-21") == (0, "ok 10 records")
    assert _verify(capsys, "--dir", str(log), "--to", "2026-11-21") == (0, "ok 11 records")
    path = _file(log, "2026-11-22")
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[2]
    _rewrite(path, lines)
    code, out = _verify(capsys, "--dir", str(log), "--from", "2026-11-22", "--to", "2026-11-22")
    assert code == 1 and out.startswith(f"broken at {path}:3: seq 14 where 13")


def test_empty_or_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _verify(capsys, "--dir", str(tmp_path)) == (
        1,
        f"broken at {tmp_path}:0: no audit day files",
    )
    assert main(["audit", "verify", "--dir", str(tmp_path / "nope")]) == 2
