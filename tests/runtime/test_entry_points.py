"""Every daemon's real entry point (``python -m symphonyd.<daemon>``) and its exit status.

The units say ``RestartPreventExitStatus=78``: a daemon that refuses its configuration must
exit 78 with a message naming the problem, or systemd restarts it in a loop; a clean SIGTERM
must exit 0. Each case runs the module exactly as ExecStart= does, in a child process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from symphonyd.runtime.daemon import EXIT_CONFIG, EXIT_OK
from tests.audit.daemon_proc import AuditDaemon

REPO = Path(__file__).resolve().parents[2]
HOST_CONFIG_READERS = ("tracker", "dispatcher", "launcher", "dashboard")
UID = str(os.getuid())
GOOD_WORKFLOW = "---\ntracker:\n  kind: memory\n  active_states: [Todo]\n---\nWork.\n"


def _env() -> dict[str, str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return env  # no NOTIFY_SOCKET, LISTEN_*, JOURNAL_STREAM: plain stderr lines


def _argv(daemon: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"symphonyd.{daemon}", *args]


def run(daemon: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *_argv(daemon, *args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=_env(),
        check=False,
    )


def dev_args(daemon: str, d: Path) -> list[str]:
    """Development sockets and paths under ``d`` (no socket activation, no system users)."""
    return {
        "tracker": ["--dispatcher-socket", str(d / "td.sock"), "--launcher-socket",
                    str(d / "tl.sock"), "--audit-socket", "none", "--dispatcher-uid", UID,
                    "--launcher-uid", UID],
        "dispatcher": ["--state-dir", str(d / "state"), "--runtime-dir", str(d),
                       "--ctl-socket", str(d / "ctl.sock")],
        "launcher": ["--socket", str(d / "l.sock"), "--dispatcher-uid", UID,
                     "--agent-home", str(d / "agent")],
        "dashboard": ["--port", "0", "--dispatcher-socket", str(d / "none.sock"),
                      "--audit-socket", "none"],
    }[daemon]  # fmt: skip


def host_config(d: Path, workflow: Path | None = None, extra: str = "", top: str = "") -> Path:
    path = d / "symphonyd.toml"
    wf = workflow or d / "WORKFLOW.md"
    path.write_text(
        f'{top}workflow = "{wf}"\n[paths]\nruntime_dir = "{d}"\nstate_dir = "{d / "state"}"\n'
        f'audit_dir = "{d / "audit"}"\n{extra}'
    )
    return path


def refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == EXIT_CONFIG, (done.returncode, done.stderr)
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr)
    assert "Traceback" not in done.stderr  # a typed refusal is explained, not dumped
    assert "outcome=ready" not in done.stderr


@pytest.mark.parametrize("daemon", HOST_CONFIG_READERS)
def test_missing_host_config_exits_78_naming_the_file(daemon: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    done = run(daemon, "--host-config", str(missing), *dev_args(daemon, tmp_path))
    refused(done, "error_code=missing_host_config", str(missing))


@pytest.mark.parametrize("daemon", HOST_CONFIG_READERS)
def test_malformed_host_config_exits_78(daemon: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[paths\nruntime_dir = 1\n")
    done = run(daemon, "--host-config", str(bad), *dev_args(daemon, tmp_path))
    refused(done, "error_code=host_config_parse_error", str(bad))


@pytest.mark.parametrize("daemon", (*HOST_CONFIG_READERS, "audit"))
def test_unknown_argument_exits_78(daemon: str) -> None:
    done = run(daemon, "--no-such-option")
    refused(done, "invalid_arguments", "--no-such-option")


# The tracker is not here on purpose: a workflow it cannot read does not stop it (note 0400),
# its requests fail with the workflow's error code until the file is fixed, no restart needed.
@pytest.mark.parametrize(
    ("workflow", "code"),
    [("---\ntracker: [unclosed\n---\nWork.\n", "workflow_parse_error"),
     (None, "missing_workflow_file")],
)  # fmt: skip
def test_dispatcher_bad_workflow_exits_78(workflow: str | None, code: str, tmp_path: Path) -> None:
    if workflow is not None:
        (tmp_path / "WORKFLOW.md").write_text(workflow)
    cfg = str(host_config(tmp_path))
    done = run("dispatcher", "--host-config", cfg, *dev_args("dispatcher", tmp_path))
    refused(done, f"error_code={code}", str(tmp_path / "WORKFLOW.md"))


def test_dispatcher_with_no_host_to_run_on_exits_78(tmp_path: Path) -> None:
    # Never a silent local fallback (SPEC A.2): no local launcher and no worker is no setup.
    (tmp_path / "WORKFLOW.md").write_text("---\ntracker: {kind: memory}\n---\nWork.\n")
    cfg = str(host_config(tmp_path, extra="[worker]\nlocal = false\n"))
    done = run("dispatcher", "--host-config", cfg, *dev_args("dispatcher", tmp_path))
    refused(done, "worker.local = false with no [[worker.hosts]]")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--max-record-bytes", "10"], "--max-record-bytes must be at least 4096"),
        (["--secret-file", "/nonexistent/secret", "--listen", "x=/nonexistent/x.sock"],
         "cannot read secret file secret"),
        ([], "error_code=no_sockets"),
    ],
)  # fmt: skip
def test_audit_configuration_errors_exit_78(args: list[str], needle: str, tmp_path: Path) -> None:
    done = run("audit", "--dir", str(tmp_path / "audit"), *args)
    refused(done, needle)


def test_launcher_sandbox_without_its_user_is_a_config_error(tmp_path: Path) -> None:
    # Not root, or root without symphony-agent: the sandbox cannot be built. Restarting
    # cannot create the user, so this is 78, not a restart loop.
    done = _in_private_passwd(tmp_path, "launcher", *dev_args("launcher", tmp_path))
    refused(done, "error_code=invalid_config", "symphony-agent")


def _in_private_passwd(tmp_path: Path, daemon: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the daemon where /etc/passwd lists only root: no package users, whatever the host."""
    if os.geteuid() != 0:
        return run(daemon, "--host-config", str(host_config(tmp_path)), *args)
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")
    mount = f'mount --bind {passwd} /etc/passwd && exec "$@"'
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh")
    return run(daemon, "--host-config", str(host_config(tmp_path)), *args, prefix=prefix)


@pytest.mark.root
def test_unknown_system_user_exits_78(tmp_path: Path) -> None:
    (tmp_path / "WORKFLOW.md").write_text(GOOD_WORKFLOW)
    # No --dispatcher-uid: the tracker looks up symphony-dispatch, which does not exist here.
    args = dev_args("tracker", tmp_path)[:6] + ["--launcher-uid", UID]
    done = _in_private_passwd(tmp_path, "tracker", *args)
    refused(done, "error_code=unknown_user", "symphony-dispatch")


def serve_and_stop(daemon: str, tmp_path: Path, host_top: str = "") -> str:
    """Start the daemon in development mode, SIGTERM it once it serves; its log. Exit 0."""
    (tmp_path / "WORKFLOW.md").write_text(GOOD_WORKFLOW)
    if daemon == "audit":
        sock = tmp_path / "a.sock"
        args = ["--dir", str(tmp_path / "audit"), "--listen", f"dispatcher={sock}"]
    else:
        extra = "[sandbox]\nenabled = false\n" if daemon == "launcher" else ""
        cfg = host_config(tmp_path, extra=extra, top=host_top)
        args = ["--host-config", str(cfg), *dev_args(daemon, tmp_path)]
        sock = tmp_path / ("td.sock" if daemon == "tracker" else "l.sock")
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(_argv(daemon, *args), cwd=REPO, env=_env(), stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while not AuditDaemon._connectable(sock):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == EXIT_OK, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text()


@pytest.mark.parametrize("daemon", ("tracker", "launcher", "audit"))
def test_sigterm_after_ready_exits_0(daemon: str, tmp_path: Path) -> None:
    text = serve_and_stop(daemon, tmp_path)
    assert "event=startup outcome=ready" in text and "reason=SIGTERM" in text
    assert "event=shutdown outcome=completed exit_code=0" in text


@pytest.mark.parametrize("daemon", ("tracker", "launcher"))
def test_host_config_log_level_applies_once_read(daemon: str, tmp_path: Path) -> None:
    text = serve_and_stop(daemon, tmp_path, host_top='log_level = "warning"\n')
    assert "event=startup outcome=starting" in text  # logged before the host config is read
    assert "outcome=ready" not in text and "outcome=completed" not in text  # info: filtered
