"""Exit codes as systemd sees them, installed from the .deb in a booted container.

A dispatcher started by hand next to the running unit refuses (exit 75) and the unit keeps
its pid; invalid configuration makes every daemon exit 78, which the units'
``RestartPreventExitStatus=78`` turns into a failed unit instead of a restart loop.
``symphonyctl doctor`` names each cause (243/CREDENTIALS for a missing credential file,
78/CONFIG) while it is current, and not once the unit runs again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.nspawn import Container
from tests.e2e.test_suite import main_pid, start_suite, unit_state, wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.agents]

HOST_CONFIG_READERS = ("tracker", "launcher", "dispatcher", "dashboard")


def show(c: Container, unit: str, prop: str) -> str:
    return c.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()


def doctor(c: Container) -> dict[str, dict[str, Any]]:
    rows = json.loads(c.run(["symphonyctl", "doctor", "--json"], check=False).stdout)
    return {row["name"]: row for row in rows}


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

    # issue 22: without its credential file the tracker loops on 243/CREDENTIALS; doctor
    # says so (it said "credential: ok" and suggested enabling the target).
    tracker = "symphony-tracker.service"
    cred = "/etc/symphony/credentials/tracker"
    c.run(["rm", cred])
    c.run(["systemctl", "restart", tracker], check=False, timeout=120)
    wait_until(
        "the tracker's credential failure", lambda: show(c, tracker, "ExecMainStatus") == "243"
    )
    rows = doctor(c)
    assert rows[tracker]["status"] == "fail", rows[tracker]
    assert "243/CREDENTIALS" in rows[tracker]["detail"] and cred in rows[tracker]["fix"], rows
    assert (
        rows["credential"]["status"] == "fail" and "LoadCredential=" in rows["credential"]["detail"]
    )
    # Fixed as doctor says: the unit runs and its old exit is no longer reported.
    c.run(["install", "-m", "0600", "/dev/null", cred])
    c.run(["systemctl", "reset-failed", tracker], check=False)  # in case systemd gave up
    c.run(["systemctl", "restart", tracker], timeout=120)
    wait_until("the tracker back", lambda: unit_state(c, tracker) == "running")
    rows = doctor(c)
    assert rows[tracker]["status"] == "ok" and "243" not in rows[tracker]["detail"], rows[tracker]
    assert rows["credential"]["status"] == "ok", rows["credential"]

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
    rows = doctor(c)
    for daemon in daemons:
        name = f"symphony-{daemon}.service"
        assert rows[name]["status"] == "fail" and "78/CONFIG" in rows[name]["detail"], rows[name]
    journal = c.run(["journalctl", "--no-pager", "-u", unit], check=False).stdout
    assert "host_config_parse_error" in journal, journal
    audit = c.run(["journalctl", "--no-pager", "-u", "symphony-audit"], check=False).stdout
    assert "larger than 65536 bytes" in audit, audit
