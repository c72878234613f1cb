"""Durable audit appends per second: group commit versus one fsync per record.

For 1, 4 and 16 concurrent writers, each writer appends one record at a time and waits for
its durable acknowledgement before sending the next (what a daemon does). Two set-ups:

- ``socket``: the real daemon (``python -m symphonyd.audit``) as a subprocess, each writer
  its own Unix-socket connection (``--max-batch-records 1`` for one fsync per record);
- ``inproc``: the store and group committer in this process, without IPC costs.

Both fdatasync on a real filesystem. Then measures how fast `verify_dir` checks a chain.

    .venv/bin/python bench/audit_throughput.py [--seconds 2] [--rounds 3] [--dir /var/tmp]

Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runnable as `python bench/audit_throughput.py` from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symphonyd.audit.commit import GroupCommitter
from symphonyd.audit.shaping import shape
from symphonyd.audit.store import AuditStore, Pending, Sender
from symphonyd.audit.verify import verify_dir
from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend
from symphonyd.core.api.shared import HEALTH, Empty
from symphonyd.core.audit_events import dispatch
from symphonyd.core.redact import Redactor
from symphonyd.runtime.ipc_client import IpcClient

REPO = Path(__file__).resolve().parent.parent

SENDER = Sender(uid=os.getuid(), pid=os.getpid(), unit="bench.service", socket="bench")


def _item(n: int, redactor: Redactor) -> Pending:
    event = dispatch(f"issue-{n % 50}", f"BENCH-{n % 50}", f"run-{n}", n % 3)
    return Pending(shape(event, redactor), SENDER)


async def _run(directory: Path, writers: int, max_batch: int, seconds: float) -> dict[str, float]:
    store = AuditStore(directory, writer=SENDER)
    committer = GroupCommitter(store, max_batch_records=max_batch)
    await committer.start()
    redactor = Redactor(["bench-configured-secret"])
    deadline = time.monotonic() + seconds
    acked = 0

    async def writer(wid: int) -> None:
        nonlocal acked
        n = wid
        while time.monotonic() < deadline:
            await committer.submit([_item(n, redactor)])
            acked += 1
            n += writers

    start = time.monotonic()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.monotonic() - start
    batches = committer.batches
    await committer.close()
    return {
        "records_per_s": round(acked / elapsed, 1),
        "records": acked,
        "mean_batch": round(acked / max(1, batches), 2),
    }


def _start_daemon(directory: Path, sock: Path, max_batch: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "symphonyd.audit",
            "--dir",
            str(directory),
            "--listen",
            f"bench={sock}",
            "--max-batch-records",
            str(max_batch),
        ],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(sock))
            return proc
        except OSError:
            time.sleep(0.02)
        finally:
            probe.close()
    proc.kill()
    raise RuntimeError("audit daemon did not start")


async def _batches(client: IpcClient) -> tuple[int, int]:
    health = await client.call(HEALTH, Empty())
    return int(health.detail["batches"]), int(health.detail["records"])


async def _run_socket(sock: Path, writers: int, seconds: float) -> dict[str, float]:
    clients = [await IpcClient.connect(sock) for _ in range(writers)]
    batches_before, records_before = await _batches(clients[0])
    deadline = time.monotonic() + seconds
    acked = 0

    async def writer(wid: int, client: IpcClient) -> None:
        nonlocal acked
        n = wid
        while time.monotonic() < deadline:
            event = dispatch(f"issue-{n % 50}", f"BENCH-{n % 50}", f"run-{n}", n % 3)
            await client.call(AUDIT_APPEND, AuditAppend(records=[event]))
            acked += 1
            n += writers

    start = time.monotonic()
    await asyncio.gather(*(writer(w, c) for w, c in enumerate(clients)))
    elapsed = time.monotonic() - start
    batches_after, records_after = await _batches(clients[0])
    for client in clients:
        await client.close()
    return {
        "records_per_s": round(acked / elapsed, 1),
        "records": acked,
        "mean_batch": round((records_after - records_before) / (batches_after - batches_before), 2),
    }


def _socket_row(base: str, writers: int, max_batch: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=base) as tmp, tempfile.TemporaryDirectory() as sockdir:
        sock = Path(sockdir) / "a.sock"
        proc = _start_daemon(Path(tmp) / "audit", sock, max_batch)
        try:
            return asyncio.run(_run_socket(sock, writers, seconds))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


async def _fill(directory: Path, records: int) -> None:
    store = AuditStore(directory, writer=SENDER)
    committer = GroupCommitter(store)
    await committer.start()
    redactor = Redactor()
    chunk = 1000
    for base in range(0, records, chunk):
        await committer.submit([_item(base + i, redactor) for i in range(chunk)])
    await committer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dir", default="/var/tmp", help="a real (non-tmpfs) filesystem")
    parser.add_argument("--verify-records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    args = parser.parse_args()

    results: dict[str, object] = {}
    print(f"{'setup':>7} {'writers':>7} {'mode':>11} {'records/s':>10} {'mean batch':>10}")
    for writers in (1, 4, 16):
        samples: dict[str, list[dict[str, float]]] = {}
        # Alternate the order each round so drifting background load hits both modes alike.
        for rnd in range(args.rounds):
            modes = [("group", 4096), ("per_record", 1)]
            for mode, max_batch in modes if rnd % 2 == 0 else modes[::-1]:
                row = _socket_row(args.dir, writers, max_batch, args.seconds)
                samples.setdefault(f"socket_{mode}_{writers}", []).append(row)
                with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
                    row = asyncio.run(_run(Path(tmp) / "audit", writers, max_batch, args.seconds))
                samples.setdefault(f"inproc_{mode}_{writers}", []).append(row)
        for key, rows in samples.items():
            row = sorted(rows, key=lambda r: r["records_per_s"])[len(rows) // 2]  # median
            results[key] = row
            setup, _, rest = key.partition("_")
            mode = rest.rsplit("_", 1)[0]
            batch = row.get("mean_batch", "")
            print(f"{setup:>7} {writers:>7} {mode:>11} {row['records_per_s']:>10} {batch:>10}")
    for setup in ("socket", "inproc"):
        for writers in (1, 4, 16):
            group = results[f"{setup}_group_{writers}"]
            single = results[f"{setup}_per_record_{writers}"]
            assert isinstance(group, dict) and isinstance(single, dict)
            ratio = group["records_per_s"] / single["records_per_s"]
            results[f"{setup}_speedup_{writers}"] = round(ratio, 2)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp) / "audit"
        asyncio.run(_fill(directory, args.verify_records))
        start = time.monotonic()
        verified = verify_dir(directory)
        elapsed = time.monotonic() - start
        assert verified.ok, verified.summary()
        results["verify_records_per_s"] = round(verified.records / elapsed, 1)
        results["verify_records"] = verified.records
    print(f"verify: {results['verify_records_per_s']} records/s over {results['verify_records']}")
    print("RESULT " + json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
