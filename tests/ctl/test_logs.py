"""`symphonyctl logs`: the journalctl it runs, checked with a recording fake and the real one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.core.sockets import SERVICES

REPO = Path(__file__).resolve().parents[2]
FAKE = """#!/bin/sh
python3 -c 'import json, sys; json.dump(sys.argv[1:], open(sys.argv[1], "w"))' "$ARGV_OUT" "$@"
echo "fake journal line"
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture
def fake_path(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "journalctl"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    return bindir


def logs(
    tmp_path: Path, bindir: Path, *args: str, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str] | None]:
    out_file = tmp_path / "argv.json"
    out_file.unlink(missing_ok=True)
    env = {
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(REPO),
        "ARGV_OUT": str(out_file),
        **(extra_env or {}),
    }
    result = subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", "logs", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    argv = json.loads(out_file.read_text())[1:] if out_file.exists() else None
    return result, argv


def test_matches_the_structured_field_across_every_unit(tmp_path: Path, fake_path: Path) -> None:
    result, argv = logs(tmp_path, fake_path, "ABC-12")
    assert result.returncode == 0 and "fake journal line" in result.stdout
    assert argv is not None
    assert argv[-2:] == ["--", "ISSUE_IDENTIFIER=ABC-12"]
    units = [argv[i + 1] for i, a in enumerate(argv) if a == "--unit"]
    assert units == [f"symphony-{d}.service" for d in SERVICES]
    assert "short-iso" in argv and "--follow" not in argv


def test_options_become_single_elements(tmp_path: Path, fake_path: Path) -> None:
    result, argv = logs(
        tmp_path, fake_path, "ABC-12", "--since=-2h", "--follow", "-n", "40", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert argv is not None
    # symphonyctl resolves the time itself (ctl/since.py); journalctl gets an absolute UTC one.
    (since,) = [a for a in argv if a.startswith("--since=")]
    assert since.endswith(" UTC") and "--follow" in argv and "--lines=40" in argv
    assert argv[argv.index("--output") + 1] == "json"


def test_journalctl_exit_code_passes_through(tmp_path: Path, fake_path: Path) -> None:
    result, _ = logs(tmp_path, fake_path, "ABC-12", extra_env={"FAKE_EXIT": "1"})
    assert result.returncode == 1


@pytest.mark.parametrize(
    "identifier",
    ["-ABC-1", "--output=cat", "ABC 1", "ABC\n1", "A\x1b[2J", "", "X" * 257],
)
def test_hostile_identifiers_never_reach_journalctl(
    tmp_path: Path, fake_path: Path, identifier: str
) -> None:
    # '--' keeps argparse from reading a leading dash as an option of ours.
    result, argv = logs(tmp_path, fake_path, "--", identifier)
    assert result.returncode == 2
    assert "invalid_identifier" in result.stderr
    assert argv is None


def test_bad_since_is_refused(tmp_path: Path, fake_path: Path) -> None:
    result, argv = logs(tmp_path, fake_path, "ABC-1", "--since", "x" * 65)
    assert result.returncode == 2 and "invalid_since" in result.stderr and argv is None


def test_missing_journalctl_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", "logs", "ABC-1"],
        env={"PATH": str(empty), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3 and "cannot run journalctl" in result.stderr


def _real_journalctl(argv: list[str], journal_dir: Path) -> subprocess.CompletedProcess[str]:
    real = shutil.which("journalctl", path="/usr/bin:/bin")
    assert real, "journalctl (systemd) must be installed"
    return subprocess.run(
        [real, f"--directory={journal_dir}", *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_argv_is_valid_journalctl_syntax(tmp_path: Path, fake_path: Path) -> None:
    # The real journalctl parses every option and match (an empty journal directory gives
    # "-- No entries --"); unknown options, bad times and malformed matches exit 1.
    _, argv = logs(tmp_path, fake_path, "ABC-12", "--since=-2h", "-n", "5", "--json")
    assert argv is not None
    journal = tmp_path / "journal"
    journal.mkdir()
    assert _real_journalctl(argv, journal).returncode == 0
    _, plain = logs(tmp_path, fake_path, "proj#7")
    assert plain is not None
    real = _real_journalctl(plain, journal)
    assert real.returncode == 0, real.stderr
    # The check can fail: a match without '=' is rejected by the same journalctl.
    broken = [*plain[:-1], "ISSUE_IDENTIFIER"]
    assert _real_journalctl(broken, journal).returncode != 0
