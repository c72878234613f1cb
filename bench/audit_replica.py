"""Audit replication through the real pieces: how fast a worker's chain reaches the control host.

A worker's audit writer (``python -m symphonyd.audit``, its client socket and the link's
read-only ``audit-link.sock``) holds ``--records`` records; a bench-owned ``sshd`` on a free
loopback port runs the bridge as its key's forced command; the link daemon
(``python -m symphonyd.link``) replicates the chain through the real ``ssh``. Measured: the
time from the link's start until its replica holds the worker's head, records and MiB per
second, and the link daemon's CPU seconds and peak RSS (``/proc``). The replica is then
checked byte for byte against the worker's files.

Needs root (sshd) and openssh-server. Everything lives in a temporary directory.

    .venv/bin/python bench/audit_replica.py [--records 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend, AuditEventIn  # noqa: E402
from symphonyd.core.audit_layout import day_files  # noqa: E402
from symphonyd.runtime.ipc_client import IpcClient  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(ready: Callable[[], bool], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


def _sshd(tmp: Path, runtime: Path) -> tuple[subprocess.Popen[bytes], int, Path, Path]:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_pub = _keygen(tmp / "host_key")
    client_pub = _keygen(tmp / "control_key")
    bridge = (
        f"env PYTHONPATH={REPO} {sys.executable} -m symphonyd.link.bridge --runtime-dir {runtime}"
    )
    (tmp / "authorized_keys").write_text(f'restrict,command="{bridge}" {client_pub}\n')
    port = _port()
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\n"
        f"PidFile {tmp / 'sshd.pid'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        "PermitRootLogin forced-commands-only\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp / "sshd_config")])

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    _wait(listening, "sshd")
    return proc, port, tmp / "control_key", tmp / "known_hosts"


async def _fill(sock: Path, records: int) -> None:
    async with await IpcClient.connect(sock) as client:
        for start in range(0, records, 1000):
            events = [
                AuditEventIn(type="dispatch", payload={"n": i, "pad": "x" * 200})
                for i in range(start, min(records, start + 1000))
            ]
            await client.call(AUDIT_APPEND, AuditAppend(events), timeout=120)


def _files(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for _d, p in day_files(directory)) if directory.is_dir() else b""


def _last_seq(directory: Path) -> int:
    files = day_files(directory) if directory.is_dir() else []
    if not files:
        return -1
    data = files[-1][1].read_bytes()
    lines = data[: data.rfind(b"\n") + 1].splitlines()
    return int(json.loads(lines[-1])["seq"]) if lines else -1


def _cpu_and_rss(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return cpu, int(hwm.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="syrep") as name:
        tmp = Path(name)
        runtime = tmp / "run"
        runtime.mkdir()
        sshd, port, key, known = _sshd(tmp, runtime)
        audit_dir = tmp / "worker-audit"
        audit = subprocess.Popen(
            [sys.executable, "-m", "symphonyd.audit", "--dir", str(audit_dir),
             "--listen", f"launcher={runtime / 'audit-launcher.sock'}",
             "--listen", f"link={runtime / 'audit-link.sock'}",
             "--allow-uid", "0", "--anchor", "none"],
            env=ENV, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        link = None
        try:
            _wait((runtime / "audit-link.sock").exists, "the audit writer")
            asyncio.run(_fill(runtime / "audit-launcher.sock", args.records))
            state = tmp / "state"
            config = tmp / "link.toml"
            config.write_text(
                f'[paths]\nruntime_dir = "{tmp}"\nstate_dir = "{state}"\n'
                f'[worker]\nssh_user = "root"\nknown_hosts = "{known}"\n'
                f'[[worker.hosts]]\nname = "w1"\naddress = "127.0.0.1"\nport = {port}\n'
            )
            replica = state / "link" / "hosts" / "w1" / "audit"
            started = time.monotonic()
            link = subprocess.Popen(
                [sys.executable, "-m", "symphonyd.link", "--host-config", str(config),
                 "--hosts-dir", str(tmp / "hosts"), "--key", str(key),
                 "--dispatcher-uid", "0", "--replicate-interval", "0.2"],
                env=ENV, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            _wait(lambda: _last_seq(replica) >= args.records, "the replica")
            elapsed = time.monotonic() - started
            cpu, rss_kib = _cpu_and_rss(link.pid)
            stored = _files(audit_dir)
            assert _files(replica) == stored, "replica differs from the worker's chain"
        finally:
            for proc in (link, audit, sshd):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=60)
    result = {
        "records": args.records + 1,
        "bytes": len(stored),
        "seconds_to_replicate": round(elapsed, 2),
        "records_per_s": round((args.records + 1) / elapsed),
        "mib_per_s": round(len(stored) / elapsed / (1 << 20), 2),
        "link_cpu_s": round(cpu, 2),
        "link_peak_rss_mib": round(rss_kib / 1024, 1),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
