"""`symphonyctl doctor`, run as a real subprocess against a host tree built in tmp_path.

Sockets are real (bind + chmod + chown), so the mode and owner checks see what the kernel
reports. The suite's system users are created for the test when the host lacks them, and
removed again afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.sockets import SOCKETS, SYSTEM_USERS

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.root

WORKFLOW = """---
tracker:
  kind: {kind}
  provider:
    project_slug: abc
{extra}workspace:
  root: {root}/ws
  cleanup:
    min_free_disk_mb: {min_free}
codex:
  command: {agent} app-server
---
Work on {{{{ issue.identifier }}}}.
"""


@pytest.fixture(scope="module")
def system_users() -> Iterator[None]:
    created = []
    for user in SYSTEM_USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                check=True,
            )
            created.append(user)
    try:
        yield
    finally:
        for user in created:
            subprocess.run(["userdel", user], check=False)


class Host:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = root / "run"
        self.audit = root / "audit"
        self.creds = root / "creds"
        self.agent = root / "fake-codex"
        self.listeners: list[socket.socket] = []
        for d in (self.run, self.audit, self.creds, root / "ws"):
            d.mkdir()
        self.audit.chmod(0o700)
        self.agent.write_text("#!/bin/sh\necho 'codex-cli 9.9.9'\n")
        self.agent.chmod(0o755)
        self.host_config = root / "symphonyd.toml"
        self.host_config.write_text(
            f'workflow = "{root}/WORKFLOW.md"\n[paths]\n'
            f'runtime_dir = "{self.run}"\naudit_dir = "{self.audit}"\n'
        )
        self.workflow(kind="local")
        (self.creds / "tracker").touch(mode=0o600)  # what the package's tmpfiles rule makes

    def workflow(
        self, *, kind: str, min_free: int = 1, agent: str | None = None, extra: str = ""
    ) -> None:
        (self.root / "WORKFLOW.md").write_text(
            WORKFLOW.format(
                kind=kind, root=self.root, min_free=min_free, agent=agent or self.agent, extra=extra
            )
        )

    def bind_all(self) -> None:
        for spec in SOCKETS:
            self.bind(spec.name, 0o600, spec.owner)

    def bind(self, name: str, mode: int, owner: str) -> None:
        path = self.run / name
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen()
        os.chmod(path, mode)
        os.chown(path, pwd.getpwnam(owner).pw_uid, 0)
        self.listeners.append(sock)
        # No daemon serves these: hang up on whoever connects (doctor asks the tracker for
        # its health), so a check that talks gets a prompt error rather than its timeout.
        threading.Thread(target=_hang_up_on_every_caller, args=(sock,), daemon=True).start()

    def close(self) -> None:
        for sock in self.listeners:
            # shutdown() wakes the thread blocked in accept(); close() alone would not, and
            # each test left its threads behind for the rest of the run.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def doctor(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "symphonyd.ctl", "doctor", "--host-config",
             str(self.host_config), "--credentials-dir", str(self.creds), *extra],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def checks(self) -> tuple[int, dict[str, dict[str, Any]]]:
        out = self.doctor("--json")
        rows = json.loads(out.stdout)
        by_name: dict[str, dict[str, Any]] = {}
        for row in rows:
            # Several rows may share a name (warnings first); keep the worst.
            prev = by_name.get(row["name"])
            if prev is None or prev["status"] == "ok":
                by_name[row["name"]] = row
        return out.returncode, by_name


def _hang_up_on_every_caller(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return  # the listener was closed: the test is over
        conn.close()


@pytest.fixture
def host(tmp_path: Path, system_users: None) -> Iterator[Host]:
    h = Host(tmp_path)
    try:
        yield h
    finally:
        h.close()


def test_healthy_host_passes(host: Host) -> None:
    host.bind_all()
    out = host.doctor()
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert not [line for line in lines if line.startswith("fail")]
    for spec in SOCKETS:
        assert f"ok   socket {spec.name}: 0600 {spec.owner}" in out.stdout
    assert "codex-cli 9.9.9" in out.stdout
    assert "ok   credential: tracker kind local needs no credential" in out.stdout


def test_bad_socket_mode_owner_and_type_fail_with_fixes(host: Host) -> None:
    by_name = {s.name: s for s in SOCKETS}
    for spec in SOCKETS:
        if spec.name == "dispatcher-ctl.sock":
            host.bind(spec.name, 0o666, spec.owner)
        elif spec.name == "audit-tracker.sock":
            host.bind(spec.name, 0o600, "symphony-dashboard")
        elif spec.name == "tracker-launcher.sock":
            (host.run / spec.name).write_text("not a socket")
        elif spec.name != "audit-dashboard.sock":
            host.bind(spec.name, 0o600, spec.owner)
    code, checks = host.checks()
    assert code == 1
    ctl = checks["socket dispatcher-ctl.sock"]
    assert ctl["status"] == "fail" and "mode 0666, want 0600" in ctl["detail"]
    assert by_name["dispatcher-ctl.sock"].unit in ctl["fix"]
    owner = checks["socket audit-tracker.sock"]
    assert owner["status"] == "fail"
    assert "owner symphony-dashboard, want symphony-tracker" in owner["detail"]
    assert "is not a socket" in checks["socket tracker-launcher.sock"]["detail"]
    assert "does not exist" in checks["socket audit-dashboard.sock"]["detail"]
    assert checks["socket launcher-dispatcher.sock"]["status"] == "ok"


def test_credential_required_by_kind_and_never_printed(host: Host) -> None:
    host.bind_all()
    host.workflow(kind="linear")
    code, checks = host.checks()
    assert code == 1 and checks["credential"]["status"] == "fail"
    assert "is empty" in checks["credential"]["detail"]

    token = host.creds / "tracker"
    token.write_text("lin_api_SUPERSECRET")
    token.chmod(0o644)
    code, checks = host.checks()
    assert code == 1 and "readable by others" in checks["credential"]["detail"]

    token.write_text("")
    token.chmod(0o600)
    host.workflow(kind="linear", extra="    api_key: $LINEAR_API_KEY\n")
    code, checks = host.checks()
    assert code == 0 and checks["credential"]["status"] == "warn"
    assert "$LINEAR_API_KEY" in checks["credential"]["detail"]

    token.write_text("lin_api_SUPERSECRET")
    token.chmod(0o600)
    out = host.doctor()
    assert out.returncode == 0, out.stdout
    assert "SUPERSECRET" not in out.stdout + out.stderr
    assert "ok   credential:" in out.stdout


def test_missing_credential_file_fails_whatever_the_kind(host: Host) -> None:
    # Issue 22: the units' LoadCredential= needs the file even for a tracker without a
    # token; doctor said "ok" while the tracker looped on 243/CREDENTIALS.
    host.bind_all()
    (host.creds / "tracker").unlink()
    code, checks = host.checks()
    assert code == 1 and checks["credential"]["status"] == "fail", checks["credential"]
    assert "LoadCredential=" in checks["credential"]["detail"]
    assert checks["credential"]["fix"] == f"install -m 0600 /dev/null {host.creds / 'tracker'}"


def test_workflow_disk_agent_and_audit_dir_failures(host: Host) -> None:
    host.bind_all()
    host.workflow(kind="local", min_free=1 << 40, agent="/nonexistent/codex")
    host.audit.chmod(0o755)
    code, checks = host.checks()
    assert code == 1
    assert checks["disk"]["status"] == "fail" and "prune" in checks["disk"]["fix"]
    assert checks["agent codex"]["status"] == "fail"
    assert "not found" in checks["agent codex"]["detail"]
    assert checks["audit-dir"]["detail"].endswith("mode 0755, want 0700")

    (host.root / "WORKFLOW.md").write_text("---\ntracker: [\n---\n")
    code, checks = host.checks()
    assert code == 1 and checks["workflow"]["status"] == "fail"
    assert "symphonyctl workflow check" in checks["workflow"]["fix"]


def test_unparsable_host_config_fails(host: Host) -> None:
    host.host_config.write_text("[paths\n")
    out = host.doctor()
    assert out.returncode == 1
    assert out.stdout.startswith("fail host-config:")
    assert "fix:" in out.stdout.splitlines()[1]


@pytest.mark.agents
def test_real_codex_cli_is_found(host: Host) -> None:
    host.bind_all()
    host.workflow(kind="local", agent="/opt/symphony-agents/node_modules/.bin/codex")
    code, checks = host.checks()
    assert checks["agent codex"]["status"] == "ok", checks["agent codex"]
    assert code == 0


def test_a_jira_credential_must_be_email_colon_token(host: Host) -> None:
    host.bind_all()
    (host.root / "WORKFLOW.md").write_text(
        "---\ntracker:\n  kind: jira\n  provider:\n    site: https://acme.atlassian.net\n"
        f"    project: ENG\nworkspace:\n  root: {host.root}/ws\n"
        f"codex:\n  command: {host.agent} app-server\n---\nWork.\n"
    )
    token = host.creds / "tracker"
    token.write_text("ATATT3xONLY_THE_TOKEN_no_email_0123456789\n")
    token.chmod(0o600)
    code, checks = host.checks()
    assert code == 1 and checks["credential"]["status"] == "fail"
    assert "account-email:api-token" in checks["credential"]["detail"]
    token.write_text("bot@acme.com:ATATT3xSECRET_0123456789abcdef\n")
    out = host.doctor()
    assert "ok   credential:" in out.stdout, out.stdout
    assert "ATATT3x" not in out.stdout + out.stderr


def test_a_worker_host_is_checked_as_one(host: Host) -> None:
    # docs/design/1100: a worker has no tracker, dispatcher or dashboard and no tracker
    # credential; doctor finds the role from the launcher's link socket (no systemd here).
    from symphonyd.ctl.doctor_worker import SPECS

    for spec in SPECS:
        host.bind(spec.name, 0o600, spec.owner)
    (host.creds / "tracker").unlink()  # a worker has none: not a failure there
    code, checks = host.checks()
    assert checks["role"]["status"] == "ok" and "worker" in checks["role"]["detail"]
    for spec in SPECS:
        assert checks[f"socket {spec.name}"]["status"] == "ok", checks[f"socket {spec.name}"]
    assert not {"credential", "workflow", "socket tracker-launcher.sock"} & set(checks)
    assert checks["link"]["status"] == "warn" and "no control host" in checks["link"]["detail"]
    assert {"link-sshd", "link-key"} <= set(checks)  # this host's /etc decides their status
    assert code == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)
    # The link's tracker forward appears once the control host's link is connected.
    (host.run / "link").mkdir(mode=0o700)
    host.bind("link/tracker.sock", 0o600, "root")
    _, checks = host.checks()
    assert checks["link"]["status"] == "ok", checks["link"]
    # Told outright, the same host is a control host again, and fails as one.
    out = host.doctor("--json", "--role", "control")
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert out.returncode == 1 and rows["socket tracker-launcher.sock"]["status"] == "fail"
