"""SIGKILL the writer again and again under concurrent load: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from symphonyd.audit.verify import verify_dir
from symphonyd.core.api.audit import AUDIT_APPEND, AuditAppend, AuditEventIn
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.ipc_client import IpcClient
from tests.audit.daemon_proc import CLIENT_NAMES, AuditDaemon, short_dir
from tests.audit.helpers import records_in

CLIENTS = 6
KILLS = 10


async def _client(
    cid: int, daemon: AuditDaemon, stop: asyncio.Event, acked: dict[tuple[int, int], list[int]]
) -> None:
    n = 0
    conn: IpcClient | None = None
    while not stop.is_set():
        if conn is None:
            try:
                conn = await IpcClient.connect(daemon.sock(CLIENT_NAMES[cid % 2]), timeout=2)
            except SymphonyError:
                await asyncio.sleep(0.01)
                continue
        # 1 to 3 records per request, so batches mix request sizes.
        records = [
            AuditEventIn(type="tool_call", payload={"client": cid, "n": n, "i": i})
            for i in range(1 + n % 3)
        ]
        try:
            ack = await conn.call(AUDIT_APPEND, AuditAppend(records=records), timeout=20)
        except SymphonyError:
            # Not acknowledged: it may or may not be on disk; send it again (at-least-once).
            await conn.close()
            conn = None
            continue
        acked[(cid, n)] = ack.seqs
        n += 1
    if conn is not None:
        await conn.close()


@pytest.mark.slow
def test_sigkill_loop_under_concurrent_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("AUDIT_CRASH_SEED", "1234")))
    acked: dict[tuple[int, int], list[int]] = {}
    acked_per_round: list[int] = []
    with short_dir() as socks:
        daemon = AuditDaemon(tmp_path / "audit", socks)
        daemon.start()
        try:

            async def killer(stop: asyncio.Event) -> None:
                for _ in range(KILLS):
                    before = len(acked)
                    await asyncio.sleep(rng.uniform(0.15, 0.5))
                    await asyncio.to_thread(daemon.kill)
                    acked_per_round.append(len(acked) - before)
                    await asyncio.to_thread(daemon.start)
                await asyncio.sleep(0.3)
                stop.set()

            async def body() -> None:
                stop = asyncio.Event()
                clients = [_client(c, daemon, stop, acked) for c in range(CLIENTS)]
                await asyncio.wait_for(asyncio.gather(killer(stop), *clients), 300)

            asyncio.run(body())
            assert daemon.stop() == 0
        finally:
            daemon.kill()
    records = records_in(tmp_path / "audit")
    by_seq = {r["seq"]: r for r in records}
    # Load really ran across the kills, not just before the first one.
    assert sum(1 for count in acked_per_round if count > 0) >= KILLS // 2
    for (cid, n), seqs in acked.items():
        for i, seq in enumerate(seqs):
            assert seq in by_seq, f"acknowledged record {seq} of client {cid} is lost"
            assert by_seq[seq]["payload"] == {"client": cid, "n": n, "i": i}, (cid, n, seq)
            assert by_seq[seq]["sender"]["socket"] == CLIENT_NAMES[cid % 2]
    result = verify_dir(tmp_path / "audit")
    assert result.ok, result.summary()
    assert result.records == len(records)
