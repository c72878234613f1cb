"""From a signed webhook POST to its agent process running, through symphony-webhook.

The four real daemons run as processes on a fake GitHub on loopback (tests/webhook/harness.py:
the tracker polls once an hour, so only the webhook explains a dispatch) and
``python -m symphonyd.webhook`` listens in front. For each of ``--issues`` issues, one at a
time: label it ``Todo`` at the fake, note the time, POST the signed ``issues`` delivery and
wait for the agent's own start stamp (``bench/data/stamped_zero_work.sh``). Latency = stamp
minus the time just before the POST. Also the receiver's own reply time (verify, hint, the
tracker's re-fetch from the fake).

    .venv/bin/python bench/webhook_latency.py [--issues 100]

Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.tracker.fake_github import FakeGitHub, gh_issue  # noqa: E402
from tests.webhook.harness import github_delivery, github_tree, running  # noqa: E402

HOUR_MS = 3_600_000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "mean_ms": round(statistics.fmean(values), 1),
        "max_ms": round(max(values), 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issues", type=int, default=100)
    p.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="whlat-", dir=args.dir))
    latencies, replies = [], []
    with FakeGitHub([gh_issue(n, labels=("Backlog",)) for n in range(1, args.issues + 1)]) as gh:
        tree = github_tree(base, gh, poll_ms=HOUR_MS)
        with running(tree) as receiver:
            time.sleep(1.0)  # past the first tick and the subscription's
            for n in range(1, args.issues + 1):
                gh.issues[n - 1]["labels"] = [{"name": "Todo"}]
                body, headers = github_delivery(n)
                sent = time.time_ns()
                reply = receiver.post("/hooks/github", body, headers)
                replies.append((time.time_ns() - sent) / 1e6)
                assert reply.json()["outcome"] == "accepted", reply.text
                ident = f"GH-{n}"
                tree.wait(f"{ident}'s agent", lambda i=ident: tree.agent_started_ns(i) is not None)
                started = tree.agent_started_ns(ident)
                assert started is not None
                latencies.append((started - sent) / 1e6)
    shutil.rmtree(base, ignore_errors=True)
    result = {"issues": args.issues, "post_to_agent": summary(latencies),
              "receiver_reply": summary(replies), "loadavg_1m": os.getloadavg()[0]}  # fmt: skip
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
