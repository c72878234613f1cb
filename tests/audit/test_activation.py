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

NOBODY = 65534

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
            s.sendall(json.dumps(req).encode() + b"\\n")
        print(f.readline().decode())
    except ConnectionResetError:
        print(json.dumps({"error": {"code": "connection_reset"}}))
    """
)


def _call(path: Path, user: int) -> dict[str, object]:
    out = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", _CLIENT, str(path)],
        user=user,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reply: dict[str, object] = json.loads(out.stdout)
    return reply


@pytest.mark.root
def test_activated_sockets_admit_only_their_owner_and_name_the_sender(tmp_path: Path) -> None:
    audit_dir = tmp_path / "audit"
    with short_dir() as socks:
        socks.chmod(0o711)
        dispatcher, launcher = socks / "audit-dispatcher.sock", socks / "audit-launcher.sock"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(
            [
                "systemd-socket-activate",
                f"--listen={dispatcher}",
                f"--listen={launcher}",
                "--fdname=dispatcher:launcher",
                f"--setenv=PYTHONPATH={REPO}",
                f"--setenv=STATE_DIRECTORY={audit_dir}",
                sys.executable,
                "-m",
                "symphonyd.audit",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while not (dispatcher.exists() and launcher.exists()):
                assert time.monotonic() < deadline, "sockets did not appear"
                time.sleep(0.02)
            # As systemd's SocketUser= would: the launcher socket belongs to "another" user.
            os.chown(launcher, NOBODY, NOBODY)
            launcher.chmod(0o600)
            as_root = _call(dispatcher, 0)
            as_nobody = _call(launcher, NOBODY)
            root_on_launcher = _call(launcher, 0)
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert as_root.get("result") is not None, output
    assert as_nobody.get("result") is not None, output
    # Root may open the file, but the socket is the launcher's: its peer check refuses root.
    error = root_on_launcher.get("error")
    assert isinstance(error, dict) and error["code"] in ("peer_not_allowed", "connection_reset")
    records = [json.loads(line) for p in audit_dir.glob("*.ndjson") for line in p.open("rb")]
    senders = {(r["sender"]["socket"], r["sender"]["uid"]) for r in records[1:]}
    assert senders == {("dispatcher", 0), ("launcher", NOBODY)}
