"""``symphonyctl doctor``'s unit lines: the state systemd reports now, and why a unit is down.

A unit that cannot start says why only in its exit status: ``243/CREDENTIALS`` when a
``LoadCredential=`` file is missing, ``78`` for a configuration the daemon refused, and so
on. These lines read ``Result``, ``ExecMainCode``, ``ExecMainStatus`` and ``NRestarts`` from
``systemctl show`` and name the cause and the fix. An exit status is only reported while
the unit is down (failed, or waiting to restart): a running unit's last exit is history,
not a current error.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from symphonyd.ctl.doctor_base import COMMAND_TIMEOUT_S, Check, fail, ok, warn

PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "ExecMainCode",
    "ExecMainStatus",
    "NRestarts",
)
CLD_EXITED = "1"  # ExecMainCode: the main process exited (2 killed, 3 dumped core)
CREDENTIALS_DIR = "/etc/symphony/credentials"

# Exit statuses a symphony unit ends with: (name, cause, fix); {unit} and {restart} are
# filled in.
EXIT_CAUSES: dict[int, tuple[str, str, str]] = {
    75: (
        "TEMPFAIL",
        "another instance holds the daemon's lock (a second dispatcher started by hand?)",
        "stop the other instance (its pid is in journalctl -u {unit} -n 20), then {restart}",
    ),
    78: (
        "CONFIG",
        "the daemon refused its configuration (host config, workflow or arguments); "
        "the unit does not restart on it",
        "see the host-config and workflow lines above and journalctl -u {unit} -n 50; "
        "correct it, then {restart}",
    ),
    200: (
        "CHDIR",
        "systemd could not enter the unit's working directory",
        "reinstall the symphonyd package; journalctl -u {unit} -n 20 names the path",
    ),
    203: (
        "EXEC",
        "systemd could not run the daemon's program (python3 or the package missing?)",
        "reinstall the symphonyd package",
    ),
    217: (
        "USER",
        "the unit's system user does not exist",
        "systemd-sysusers /usr/lib/sysusers.d/symphonyd.conf (or reinstall the package)",
    ),
    226: (
        "NAMESPACE",
        "systemd could not set up the unit's mount namespace (a path in ReadWritePaths= or "
        "StateDirectory= is missing, or this container may not mount)",
        "journalctl -u {unit} -n 20 names the path; create it or reinstall the package",
    ),
    243: (
        "CREDENTIALS",
        "systemd could not load the unit's credential: a LoadCredential= file under "
        f"{CREDENTIALS_DIR} is missing or unreadable (needed even when the tracker kind "
        "needs no token)",
        f"install -m 0600 /dev/null {CREDENTIALS_DIR}/tracker (or write the token there), "
        "then {restart}",
    ),
}


def systemctl_show(units: list[str]) -> dict[str, dict[str, str]]:
    """``systemctl show`` of ``units``, one property map per unit Id."""
    argv = ["systemctl", "show", *(f"--property={p}" for p in PROPERTIES), "--", *units]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    ).stdout
    result: dict[str, dict[str, str]] = {}
    for block in out.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in fields:
            result[fields["Id"]] = fields
    return result


def why_down(unit: str, p: Mapping[str, str]) -> tuple[str, str]:
    """The cause and fix of a unit that is down, from its last main-process exit."""
    cause, fix = _exit_cause(unit, p)
    if p.get("Result") == "start-limit-hit":
        # systemd stopped retrying; the exit that kept failing is still the cause.
        return f"restarted too often, systemd gave up; last {cause}", fix
    return cause, fix


def _exit_cause(unit: str, p: Mapping[str, str]) -> tuple[str, str]:
    code, status = p.get("ExecMainCode", ""), p.get("ExecMainStatus", "")
    result = p.get("Result", "")
    journal = f"journalctl -u {unit} -n 50"
    restart = f"systemctl reset-failed {unit}; systemctl restart {unit}"
    if code and code != CLD_EXITED and status.isdigit() and status != "0":
        return f"killed by signal {status} ({result or 'signal'})", f"{journal}; then {restart}"
    if status.isdigit() and int(status) in EXIT_CAUSES:
        name, cause, fix = EXIT_CAUSES[int(status)]
        return f"exit status {status}/{name}: {cause}", fix.format(unit=unit, restart=restart)
    if status.isdigit() and status != "0":
        return f"exit status {status} ({result or 'exit-code'})", f"{journal}; then {restart}"
    return f"result {result or 'unknown'}", f"{journal}; then {restart}"


def unit_check(unit: str, p: Mapping[str, str]) -> Check:
    load, active, sub = p.get("LoadState", "?"), p.get("ActiveState", "?"), p.get("SubState", "?")
    detail = f"{load}, {active}/{sub}"
    restarts = p.get("NRestarts", "0")
    if load != "loaded":
        return fail(unit, detail, "install the symphonyd package, then systemctl daemon-reload")
    if active == "failed" or sub == "auto-restart":
        cause, fix = why_down(unit, p)
        again = f", {restarts} restarts" if restarts not in ("", "0") else ""
        return fail(unit, f"{detail}{again}: {cause}", fix)
    if active == "active":
        return ok(unit, detail)
    if active in ("activating", "reloading", "deactivating"):
        return warn(unit, detail, f"changing state; run doctor again in a few seconds ({unit})")
    return warn(unit, detail, "systemctl enable --now symphony.target")


# The optional webhook receiver (docs/change-events.md): not part of symphony.target, so its
# units are reported only once the operator enabled the socket.
RECEIVER_SOCKET = "symphony-webhook.socket"
RECEIVER_SERVICE = "symphony-webhook.service"
RECEIVER_UNITS = [RECEIVER_SOCKET, RECEIVER_SERVICE]


def receiver_checks(props: Mapping[str, Mapping[str, str]]) -> list[Check]:
    """Whether the webhook receiver is live: its socket listening, its service not down."""
    sock, service = props.get(RECEIVER_SOCKET, {}), props.get(RECEIVER_SERVICE, {})
    down = service.get("ActiveState") == "failed" or service.get("SubState") == "auto-restart"
    if sock.get("ActiveState") != "active" and not down:
        return [ok("webhook receiver", "not enabled (optional; docs/change-events.md)")]
    checks = [unit_check(RECEIVER_SOCKET, sock)]
    if service.get("ActiveState") == "inactive" and not down:
        # Socket activation: the service starts on the first delivery.
        checks.append(ok(RECEIVER_SERVICE, "idle; started by the first delivery"))
    else:
        checks.append(unit_check(RECEIVER_SERVICE, service))
    return checks
