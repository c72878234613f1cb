"""The man page and bash completion match the parser; every command answers --help."""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.ctl.main import build_parser

REPO = Path(__file__).resolve().parents[2]
GEN = REPO / "packaging" / "gen-cli-docs.py"
MAN = REPO / "packaging" / "man" / "symphonyctl.1"
COMPLETION = REPO / "packaging" / "completion" / "symphonyctl"


def command_paths(
    parser: argparse.ArgumentParser | None = None, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    p = parser or build_parser()
    found: list[tuple[str, ...]] = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += command_paths(sub, (*prefix, name))
    return found


def gen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GEN), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_committed_files_equal_a_fresh_generation() -> None:
    result = gen("--check")
    assert result.returncode == 0, result.stderr


def test_check_notices_drift(tmp_path: Path) -> None:
    (tmp_path / "man").mkdir()
    (tmp_path / "completion").mkdir()
    shutil.copy(COMPLETION, tmp_path / "completion" / "symphonyctl")
    # A man page missing one command, as after adding a subcommand without regenerating.
    text = MAN.read_text()
    (tmp_path / "man" / "symphonyctl.1").write_text(text.replace(".SS doctor", ".SS gone"))
    result = gen("--check", "--out-dir", str(tmp_path))
    assert result.returncode == 1 and "symphonyctl.1" in result.stderr
    assert gen("--out-dir", str(tmp_path)).returncode == 0
    assert gen("--check", "--out-dir", str(tmp_path)).returncode == 0


def test_man_page_lists_every_command_and_renders_cleanly() -> None:
    text = MAN.read_text()
    for path in command_paths():
        assert f".SS {' '.join(path)}".replace("-", "\\-") in text, path
    groff = shutil.which("groff")
    assert groff, "groff (package groff-base) renders man pages"
    result = subprocess.run(
        [groff, "-man", "-ww", "-z", str(MAN)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr


@pytest.mark.parametrize("path", command_paths())
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*path, "--help"])
    assert exit_info.value.code == 0
    assert out.getvalue().startswith("usage: symphonyctl " + " ".join(path))


def complete(*words: str) -> list[str]:
    script = (
        f"source {COMPLETION}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_symphonyctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completion(tmp_path: Path) -> None:
    assert complete("symphonyctl", "wo") == ["workflow", "workspace"]
    assert complete("symphonyctl", "workflow", "") == ["check", "render"]
    assert "--host-config" in complete("symphonyctl", "doctor", "--")
    assert complete("symphonyctl", "logs", "ABC-1", "--f") == ["--follow"]
    # An option's value is not mistaken for a command, and path values complete files.
    probe = tmp_path / "host-probe.toml"
    probe.write_text("")
    assert complete("symphonyctl", "doctor", "--host-config", str(tmp_path / "host-")) == [
        str(probe)
    ]
    assert complete("symphonyctl", "pause", "--reason", "status", "--") == [
        "--help",
        "--reason",
        "--socket",
    ]
