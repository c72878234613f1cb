"""Exit codes as systemd sees them, installed from the .deb in a booted container.

A dispatcher started by hand next to the running unit refuses (exit 75) and the unit keeps
its pid; invalid configuration makes every daemon exit 78, which the units'
``RestartPreventExitStatus=78`` turns into a failed unit instead of a restart loop.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devtools.nspawn import Container
from tests.e2e.test_suite import main_pid, start_suite, unit_state

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.agents]

HOST_CONFIG_READERS = ("tracker", "launcher", "dispatcher", "dashboard")


def show(c: Container, unit: str, prop: str) -> str:
    return c.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()


def test_one_dispatcher_and_config_errors_do_not_restart_loop(
    container: Container, deb_file: Path
) -> None:
    c = container
    start_suite(c, deb_file)
    unit = "symphony-dispatcher.service"
    pid = main_pid(c, unit)

    # issue 22: run by hand as the dispatcher's user, with a control socket of its own.
    stray = c.run(
        ["runuser", "-u", "symphony-dispatch", "--", "python3", "-m", "symphonyd.dispatcher",
         "--ctl-socket", "/tmp/stray-ctl.sock"],
        check=False, timeout=60,
    )  # fmt: skip
    assert stray.returncode == 75, stray.stderr
    assert "error_code=already_running" in stray.stderr and f"pid {pid}" in stray.stderr
    assert unit_state(c, unit) == "running" and main_pid(c, unit) == pid

    # Everything down, then a broken host config: each daemon that reads it refuses with 78
    # and stays down (a fresh start, as after a reboot with a bad edit).
    daemons = (*HOST_CONFIG_READERS, "audit")
    services = [f"symphony-{d}.service" for d in daemons]
    c.run(["systemctl", "stop", *services], timeout=180)
    assert all(unit_state(c, name) != "running" for name in services)
    c.run(["tee", "/etc/symphony/symphonyd.toml"], input="[paths\n")
    # A secret file the audit writer must scrub but cannot hold: its configuration error.
    c.run(["sh", "-c", "head -c 70000 /dev/zero | tr '\\0' x > /etc/symphony/credentials/tracker"])
    c.run(["systemctl", "reset-failed", *services], check=False)  # NRestarts back to 0
    for name in services:
        c.run(["systemctl", "start", name], check=False, timeout=120)
    time.sleep(8)  # several RestartSec=2s: a restart loop would have shown by now
    for daemon in daemons:
        name = f"symphony-{daemon}.service"
        state = {p: show(c, name, p) for p in ("ExecMainStatus", "NRestarts", "ActiveState")}
        journal = c.run(
            ["journalctl", "--no-pager", "-o", "short-precise", "-n", "60", "-u", name],
            check=False,
        ).stdout
        expected = {"ExecMainStatus": "78", "NRestarts": "0", "ActiveState": "failed"}
        assert state == expected, f"{name}: {state}\n{journal}"
    journal = c.run(["journalctl", "--no-pager", "-u", unit], check=False).stdout
    assert "host_config_parse_error" in journal, journal
    audit = c.run(["journalctl", "--no-pager", "-u", "symphony-audit"], check=False).stdout
    assert "larger than 65536 bytes" in audit, audit
