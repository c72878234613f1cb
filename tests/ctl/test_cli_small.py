"""Issue 22 item 12, each through the real ``symphonyctl`` (a subprocess of ``-m symphonyd.ctl``).

A closed pipe ends ``status`` quietly; ``workflow check`` defaults to the installed workflow;
``audit show`` and ``logs`` take the same ``--since`` forms; ``logs --no-pager``; ``issue new
--help`` explains every option.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from symphonyd.audit.store import AuditStore, Sender
from tests.dispatcher.doubles import run_async
from tests.dispatcher.socket_doubles import socket_world
from tests.dispatcher.test_daemon_sockets import dispatcher

REPO = Path(__file__).resolve().parents[2]
GOOD_WORKFLOW = "---\ntracker: {kind: memory}\n---\nDo {{ issue.identifier }}\n"
JOURNAL_FAKE = """#!/bin/sh
python3 -c 'import json, sys; json.dump(sys.argv[1:], open(sys.argv[1], "w"))' "$ARGV_OUT" "$@"
"""


def env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), **extra}


def ctl(*args: str, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", *args],
        cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


# ---------------------------------------------------------------- status | head


@run_async
async def test_status_into_a_closed_pipe_exits_quietly_like_a_unix_tool() -> None:
    async with socket_world() as world, dispatcher(world):
        read_end, write_end = os.pipe()
        os.close(read_end)  # `head` has read its lines and gone
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "symphonyd.ctl",
                "status", "--socket", str(world.root / "ctl.sock"),
                stdout=write_end, stderr=subprocess.PIPE, env=env(),
            )  # fmt: skip
        finally:
            os.close(write_end)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert err.decode() == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert proc.returncode == 0  # the reader got what it wanted; not an error


def test_a_reader_that_keeps_reading_still_gets_everything() -> None:
    # The pipe handling must not swallow output when the reader is still there.
    result = ctl("issue", "new", "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.rstrip().endswith("'-' reads stdin")


# ---------------------------------------------------------------- workflow check


def host_config(tmp_path: Path, workflow: Path) -> Path:
    path = tmp_path / "symphonyd.toml"
    path.write_text(f'workflow = "{workflow}"\n')
    return path


def test_workflow_check_without_a_path_checks_the_installed_workflow(tmp_path: Path) -> None:
    installed = tmp_path / "etc" / "WORKFLOW.md"
    installed.parent.mkdir()
    installed.write_text(GOOD_WORKFLOW)
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    (elsewhere / "WORKFLOW.md").write_text("---\ntracker: [broken\n---\n")  # must not be read
    config = host_config(tmp_path, installed)
    result = ctl("workflow", "check", "--host-config", str(config), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {installed} "), result.stdout
    # ... and a broken installed workflow is what it reports, whatever the directory holds.
    installed.write_text("---\ntracker: [oops\n---\n")
    (elsewhere / "WORKFLOW.md").write_text(GOOD_WORKFLOW)
    bad = ctl("workflow", "check", "--host-config", str(config), cwd=elsewhere)
    assert bad.returncode == 2 and bad.stderr.startswith("error: workflow_parse_error: ")
    assert str(installed) in bad.stderr


def test_workflow_check_names_a_missing_host_config(tmp_path: Path) -> None:
    result = ctl("workflow", "check", "--host-config", str(tmp_path / "none.toml"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: missing_host_config: "), result.stderr


# ---------------------------------------------------------------- --since


@pytest.fixture
def journal_fake(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "journalctl").write_text(JOURNAL_FAKE)
    (bindir / "journalctl").chmod(0o755)
    return bindir


def logs_since(tmp_path: Path, bindir: Path, *args: str) -> tuple[int, str, list[str] | None]:
    out = tmp_path / "argv.json"
    out.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", "logs", "ABC-1", *args],
        env=env(PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", ARGV_OUT=str(out)),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    argv = json.loads(out.read_text())[1:] if out.exists() else None
    return result.returncode, result.stderr, argv


def one_record_audit_dir(tmp_path: Path, at: datetime) -> Path:
    directory = tmp_path / "audit"
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store = AuditStore(directory, writer=Sender(uid=0, pid=1), clock=lambda: stamp)
    store.open()  # writes the genesis record at ``at``
    store.close()
    return directory


SINCE_FORMS = ["90m", "-90m", "90m ago", "2h", "1d", "today", "yesterday", "now"]


@pytest.mark.parametrize("form", SINCE_FORMS)
def test_audit_show_and_logs_accept_the_same_since(
    tmp_path: Path, journal_fake: Path, form: str
) -> None:
    audit_dir = one_record_audit_dir(tmp_path, datetime.now(UTC) - timedelta(hours=1))
    shown = ctl("audit", "show", "--dir", str(audit_dir), f"--since={form}", "--json")
    assert shown.returncode == 0, shown.stderr
    code, err, argv = logs_since(tmp_path, journal_fake, f"--since={form}")
    assert code == 0 and argv is not None, err
    (since,) = [a for a in argv if a.startswith("--since=")]
    assert since.endswith(" UTC"), since  # resolved by symphonyctl, not left to journalctl
    # The real journalctl accepts the resolved time.
    journal = tmp_path / "journal"
    journal.mkdir()
    real = shutil.which("journalctl", path="/usr/bin:/bin")
    assert real, "journalctl (systemd) must be installed"
    check = subprocess.run(
        [real, f"--directory={journal}", *argv], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


def test_since_means_the_same_instant_in_both_commands(tmp_path: Path, journal_fake: Path) -> None:
    at = datetime(2026, 1, 31, 8, 0, 0, tzinfo=UTC)
    audit_dir = one_record_audit_dir(tmp_path, at)
    for form, included in [
        ("2026-01-31T10:00:00+02:00", True),  # exactly the record's instant
        ("2026-01-31 08:00:01", False),  # no zone: UTC, one second later
        ("2026-01-31", True),
        ("2026-02-01", False),
    ]:
        shown = ctl("audit", "show", "--dir", str(audit_dir), f"--since={form}", "--json")
        assert shown.returncode == 0, shown.stderr
        assert bool(shown.stdout.strip()) is included, (form, shown.stdout)
        _, err, argv = logs_since(tmp_path, journal_fake, "--since", form)
        assert argv is not None, err
        resolved = datetime.strptime(
            next(a for a in argv if a.startswith("--since=")), "--since=%Y-%m-%d %H:%M:%S UTC"
        ).replace(tzinfo=UTC)
        assert (resolved <= at) is included, (form, resolved)


@pytest.mark.parametrize("form", ["soon", "2 weeks", "x" * 65, "2026-13-01"])
def test_a_bad_since_is_the_same_typed_error_in_both(
    tmp_path: Path, journal_fake: Path, form: str
) -> None:
    shown = ctl("audit", "show", "--dir", str(tmp_path), "--since", form)
    code, err, argv = logs_since(tmp_path, journal_fake, "--since", form)
    for rc, text in ((shown.returncode, shown.stderr), (code, err)):
        assert rc == 2 and "invalid_since" in text, text
    assert argv is None  # journalctl never ran


# ---------------------------------------------------------------- logs --no-pager, issue help


def test_logs_accepts_no_pager(tmp_path: Path, journal_fake: Path) -> None:
    code, err, argv = logs_since(tmp_path, journal_fake, "--no-pager")
    assert code == 0, err
    assert argv is not None and argv.count("--no-pager") == 1


def test_issue_new_help_explains_every_option() -> None:
    result = ctl("issue", "new", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for option, words in [
        ("identifier", "issue key and file name"),
        ("--title TITLE", "one-line title"),
        ("--state STATE", "initial state (default Todo"),
        ("--priority PRIORITY", "integer, lower dispatches first"),
        ("--label LABEL", "label (repeatable"),
        ("--blocked-by IDENTIFIER", "an issue that must reach a terminal state first"),
        ("--description DESCRIPTION", "Markdown body; '-' reads stdin"),
    ]:
        assert f"{option} {words}" in text, (option, text)
