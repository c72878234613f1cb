"""Socket activation as systemd does it: one named socket per client, owner = the one uid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.audit.daemon_proc import REPO, short_dir

OTHER = 65533  # a uid that is neither root nor the overflow uid
OVERFLOW = 65534

# A refused peer is told so right after connecting; an admitted one hears nothing until it
# asks. Reading first keeps the refusal from being lost to a reset.
_CLIENT = textwrap.dedent(
    """
    import json, select, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sys.argv[1])
    f = s.makefile("rb")
    try:
        if not select.select([s], [], [], 0.5)[0]:
            req = {"v": 1, "id": 1, "method": "audit.append",
                   "params": {"records": [{"type": "pause", "payload": {"via": sys.argv[1]}}]}}
            if len(sys.argv) > 2:
                req = {"v": 1, "id": 1, **json.loads(sys.argv[2])}
            s.sendall(json.dumps(req).encode() + b"\\n")
        print(f.readline().decode())
    except ConnectionResetError:
        print(json.dumps({"error": {"code": "connection_reset"}}))
    """
)


def _call(path: Path, user: int, request: dict[str, object] | None = None) -> dict[str, object]:
    extra = [] if request is None else [json.dumps(request)]
    out = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", _CLIENT, str(path), *extra],
        user=user,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reply: dict[str, object] = json.loads(out.stdout)
    return reply


def _activate(
    socks: Path, audit_dir: Path, names: tuple[str, ...] = ("dispatcher", "launcher")
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "systemd-socket-activate",
            *[f"--listen={socks / f'audit-{name}.sock'}" for name in names],
            f"--fdname={':'.join(names)}",
            f"--setenv=PYTHONPATH={REPO}",
            f"--setenv=STATE_DIRECTORY={audit_dir}",
            sys.executable,
            "-m",
            "symphonyd.audit",
        ],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_for(*paths: Path) -> None:
    deadline = time.monotonic() + 30
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, "sockets did not appear"
        time.sleep(0.02)


@pytest.mark.root
def test_activated_sockets_admit_only_their_owner_and_name_the_sender(tmp_path: Path) -> None:
    audit_dir = tmp_path / "audit"
    with short_dir() as socks:
        socks.chmod(0o711)
        dispatcher, launcher = socks / "audit-dispatcher.sock", socks / "audit-launcher.sock"
        proc = _activate(socks, audit_dir)
        try:
            _wait_for(dispatcher, launcher)
            # As systemd's SocketUser= would: the launcher socket belongs to "another" user.
            os.chown(launcher, OTHER, OTHER)
            launcher.chmod(0o600)
            as_root = _call(dispatcher, 0)
            as_other = _call(launcher, OTHER)
            root_on_launcher = _call(launcher, 0)
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert as_root.get("result") is not None, output
    assert as_other.get("result") is not None, output
    # Root may open the file, but the socket is the launcher's: its peer check refuses root.
    error = root_on_launcher.get("error")
    assert isinstance(error, dict) and error["code"] in ("peer_not_allowed", "connection_reset")
    records = [json.loads(line) for p in audit_dir.glob("*.ndjson") for line in p.open("rb")]
    senders = {(r["sender"]["socket"], r["sender"]["uid"]) for r in records[1:]}
    assert senders == {("dispatcher", 0), ("launcher", OTHER)}


@pytest.mark.root
def test_sockets_owned_by_the_overflow_uid_refuse_to_start(tmp_path: Path) -> None:
    # Under PrivateUsers=yes every other user appears as the overflow uid: the writer could
    # neither check nor record who is calling, so it must not serve at all.
    with short_dir() as socks:
        dispatcher, launcher = socks / "audit-dispatcher.sock", socks / "audit-launcher.sock"
        proc = _activate(socks, tmp_path / "audit")
        try:
            _wait_for(dispatcher, launcher)
            os.chown(launcher, OVERFLOW, OVERFLOW)
            probe = subprocess.run(
                ["/usr/bin/python3", "-I", "-c", _CLIENT, str(dispatcher)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert "result" not in probe.stdout
    assert "overflow uid" in output and "PrivateUsers" in output


@pytest.mark.root
def test_the_activated_link_socket_reads_the_chain_and_cannot_append(tmp_path: Path) -> None:
    # On a worker host: symphony-audit-link.socket (FileDescriptorName=link, SocketUser= the
    # link user) serves audit.records_after and nothing else (docs/design/1100).
    audit_dir = tmp_path / "audit"
    with short_dir() as socks:
        socks.chmod(0o711)
        dispatcher, link = socks / "audit-dispatcher.sock", socks / "audit-link.sock"
        proc = _activate(socks, audit_dir, ("dispatcher", "link"))
        try:
            _wait_for(dispatcher, link)
            os.chown(link, OTHER, OTHER)
            link.chmod(0o600)
            appended = _call(dispatcher, 0)
            forged = _call(link, OTHER)
            head = _call(link, OTHER, {"method": "audit.head", "params": {}})
            page = _call(link, OTHER, {"method": "audit.records_after", "params": {"after": -1}})
            root_on_link = _call(
                link, 0, {"method": "audit.records_after", "params": {"after": -1}}
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert appended.get("result") is not None, output
    for refused in (forged, head):
        error = refused.get("error")
        assert isinstance(error, dict) and error["code"] == "unknown_method", output
    result = page.get("result")
    assert isinstance(result, dict) and result["head_seq"] == 1, output
    stored = b"".join(p.read_bytes() for p in sorted(audit_dir.glob("*.ndjson")))
    assert "".join(line + "\n" for line in result["lines"]).encode() == stored
    error = root_on_link.get("error")
    assert isinstance(error, dict) and error["code"] in ("peer_not_allowed", "connection_reset")
