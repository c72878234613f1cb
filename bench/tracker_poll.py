"""Time and peak memory to poll and normalise 10 000 Linear (or Jira) issues across pages.

Starts the tests' local Linear GraphQL server (``--kind jira``: the local Jira REST v3
server) in a separate process (so its JSON encoding is not counted), then runs the production
adapter's ``fetch_issues_by_states`` over real HTTP on 127.0.0.1 for each page size. Timing
runs are separate from the memory run because tracemalloc slows allocation-heavy code
several-fold.

    .venv/bin/python bench/tracker_poll.py [--kind linear|jira] [--issues 10000] [--repeat 3]

Last line: RESULT {json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

# Runnable as `python bench/tracker_poll.py` from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symphonyd.tracker.jira import JiraAdapter
from symphonyd.tracker.linear import LinearAdapter
from symphonyd.tracker.provider_config import TrackerSettings
from tests.tracker.fake_jira import CREDENTIAL, FakeJira, blocked_by, jira_issue
from tests.tracker.fake_linear import TOKEN, FakeLinear, linear_node

PAGE_SIZES = (50, 250)
JIRA_PAGE_SIZES = (50, 100)  # Jira's search/jql answers at most 100 issues with these fields


class StaticLinear(FakeLinear):
    """The tests' server with its filter result memoised: the board never changes here, and
    re-filtering 10 000 nodes per page would measure the fake instead of the adapter."""

    def _page(self, var: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(var["filter"], sort_keys=True)
        cache: dict[str, list[dict[str, Any]]] = self.__dict__.setdefault("_memo", {})
        if key not in cache:
            cache[key] = super()._page({**var, "first": len(self.nodes), "after": None})["nodes"]
        matches = cache[key]
        start = int(var["after"].split(":")[1]) if var.get("after") else 0
        page = matches[start : start + int(var["first"])]
        end = start + len(page)
        return {
            "nodes": page,
            "pageInfo": {"hasNextPage": end < len(matches), "endCursor": f"c:{end}"},
        }


def _serve(kind: str, count: int, port_out: Any, stop: Any) -> None:
    if kind == "jira":
        _serve_jira(count, port_out, stop)
        return
    nodes = []
    for n in range(1, count + 1):
        node = linear_node(n, state="Todo" if n % 3 else "In Progress")
        if n % 7 == 0:
            node["inverseRelations"] = {
                "nodes": [
                    {
                        "type": "blocks",
                        "issue": {
                            "id": f"lin-{n - 1}",
                            "identifier": f"ENG-{n - 1}",
                            "state": {"name": "In Progress", "type": "started"},
                        },
                    }
                ]
            }
        nodes.append(node)
    with StaticLinear(nodes) as srv:
        port_out.send(srv.port)
        stop.wait()


def _serve_jira(count: int, port_out: Any, stop: Any) -> None:
    """The same board shape in Jira's: two states, every 7th issue blocked by the one before."""
    issues: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        issue = jira_issue(n, state="To Do" if n % 3 else "In Progress")
        if n % 7 == 0:
            issue["fields"]["issuelinks"] = [blocked_by(issues[-1])]
        issues.append(issue)
    with FakeJira(issues) as srv:
        srv.static = issues  # the board never changes here: skip the fake's JQL filtering
        port_out.send(srv.port)
        stop.wait()


async def _poll_jira(port: int, page_size: int) -> int:
    settings = TrackerSettings(
        "jira",
        {
            "site": f"http://127.0.0.1:{port}",
            "project": "ENG",
            "page_size": page_size,
            "timeout_ms": 120_000,
        },
        ("To Do", "In Progress"),
        ("Done",),
    )
    adapter = JiraAdapter(settings, {"JIRA_API_TOKEN": CREDENTIAL})
    try:
        issues = await adapter.fetch_issues_by_states(["To Do", "In Progress"])
    finally:
        await adapter.aclose()
    return len(issues)


async def _poll(port: int, page_size: int) -> int:
    settings = TrackerSettings(
        "linear",
        {
            "endpoint": f"http://127.0.0.1:{port}/graphql",
            "project_slug": "symph",
            "page_size": page_size,
            "timeout_ms": 120_000,
        },
        ("Todo", "In Progress"),
        ("Done",),
    )
    adapter = LinearAdapter(settings, {"LINEAR_API_KEY": TOKEN})
    try:
        issues = await adapter.fetch_issues_by_states(["Todo", "In Progress"])
    finally:
        await adapter.aclose()
    return len(issues)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kind", choices=("linear", "jira"), default="linear")
    args = parser.parse_args()
    poll = _poll_jira if args.kind == "jira" else _poll
    page_sizes = JIRA_PAGE_SIZES if args.kind == "jira" else PAGE_SIZES
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(args.kind, args.issues, send, stop), daemon=True)
    server.start()
    try:
        if not recv.poll(120):
            raise SystemExit(f"fake {args.kind} server did not start")
        port = recv.recv()
        results: dict[str, Any] = {"kind": args.kind, "issues": args.issues}
        for page_size in page_sizes:
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                got = asyncio.run(poll(port, page_size))
                times.append(time.perf_counter() - start)
                assert got == args.issues, got
            tracemalloc.start()
            asyncio.run(poll(port, page_size))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            median = statistics.median(times)
            results[f"page_{page_size}"] = {
                "pages": -(-args.issues // page_size),
                "seconds_median": round(median, 3),
                "seconds_min": round(min(times), 3),
                "issues_per_second": round(args.issues / median),
                "peak_traced_mib": round(peak / 2**20, 1),
            }
            print(
                f"page_size={page_size}: median {median:.2f}s, "
                f"{args.issues / median:.0f} issues/s, peak {peak / 2**20:.1f} MiB traced"
            )
        results["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    finally:
        stop.set()
        server.join(30)
        if server.is_alive():
            server.kill()
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
