"""What `symphonyctl audit verify` pays to find the furthest head anchor in a long journal.

Fills a real systemd-journald of its own (tests/audit/journald.py: private mount namespace,
nothing of the host touched; needs root) with ``--anchors`` anchor entries, as a writer that
is busy all the time would log one per minute (20 000 is about two weeks, 525 600 a year),
then times ``read_anchors`` (journalctl -o json, streamed, furthest kept) and reports the
peak memory of this process (which does the parsing).
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symphonyd.audit.anchor import Anchor
from symphonyd.audit.anchor_read import read_anchors
from tests.audit import journald
from tests.audit.daemon_proc import short_dir

DIRECTORY = "/var/lib/symphony/audit"
# The bench sends as fast as it can; journald's per-sender rate limit would drop most of it.
journald._CONFIG += "RateLimitIntervalSec=0\n"


def _send_all(path: str, count: int) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for seq in range(count):
        anchor = Anchor(seq, f"{seq:064x}", "2026-12-06T00:00:00.000000Z", DIRECTORY, "a" * 64, "x")
        data = "".join(f"{k}={v}\n" for k, v in anchor.fields().items()).encode()
        sock.sendto(data, path)
    sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--anchors", type=int, default=20000)
    args = parser.parse_args()
    with short_dir() as base, journald.own_journald(base) as journal:
        _send_all(str(journal.socket), args.anchors)
        deadline = time.monotonic() + 300
        while True:  # journald takes the datagrams at its own pace
            scan = read_anchors(DIRECTORY, 0, journal.directory)
            if scan.best is not None and scan.best.seq == args.anchors - 1:
                break
            assert time.monotonic() < deadline, "journald did not take every anchor"
            time.sleep(1)
        runs = []
        for _ in range(3):
            start = time.monotonic()
            scan = read_anchors(DIRECTORY, 0, journal.directory)
            runs.append(time.monotonic() - start)
        size = sum(p.stat().st_size for p in journal.directory.rglob("*.journal"))
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "anchors": scan.entries,
        "furthest_seq": scan.best.seq if scan.best else None,
        "read_s_min": round(min(runs), 2),
        "read_s_max": round(max(runs), 2),
        "journal_mib": round(size / 2**20, 1),
        "python_max_rss_mib": round(self_kib / 1024, 1),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
