"""Durable audit appends per second: group commit versus one fsync per record.

For 1, 4 and 16 concurrent writers, each writer appends one record at a time and waits for
its durable acknowledgement before sending the next (what a daemon does). Runs the real
store and group committer on a real filesystem (fdatasync per batch). Then measures how
fast `verify_dir` checks the chain.

    .venv/bin/python bench/audit_throughput.py [--seconds 2] [--dir /var/tmp] [--verify-records N]

Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
from symphonyd.core.audit_events import dispatch
from symphonyd.core.redact import Redactor

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
    args = parser.parse_args()

    results: dict[str, object] = {}
    print(f"{'writers':>7} {'mode':>11} {'records/s':>10} {'mean batch':>10}")
    for writers in (1, 4, 16):
        for mode, max_batch in (("group", 4096), ("per_record", 1)):
            with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
                row = asyncio.run(_run(Path(tmp) / "audit", writers, max_batch, args.seconds))
            results[f"{mode}_{writers}"] = row
            print(f"{writers:>7} {mode:>11} {row['records_per_s']:>10} {row['mean_batch']:>10}")
    for writers in (1, 4, 16):
        group = results[f"group_{writers}"]
        single = results[f"per_record_{writers}"]
        assert isinstance(group, dict) and isinstance(single, dict)
        results[f"speedup_{writers}"] = round(group["records_per_s"] / single["records_per_s"], 2)

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
