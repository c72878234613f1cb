"""Time and peak memory to poll and normalise 10 000 Linear, GitLab, Jira or Asana issues.

Starts the tests' local Linear GraphQL server in a separate process (so its JSON encoding is
not counted), then runs the production LinearAdapter's ``fetch_issues_by_states`` over real
HTTP on 127.0.0.1 for each page size. Timing runs are separate from the memory run because
tracemalloc slows allocation-heavy code several-fold.

    .venv/bin/python bench/tracker_poll.py [--kind linear|gitlab|jira|asana] [--issues N]
        [--repeat 3]

``--kind gitlab`` runs the production GitLabAdapter against the tests' GitLab REST server
(keyset pages announced by ``Link``) with ``blockers: none`` at two page sizes, then once
more with the default ``blockers: links`` and a cold link cache (one links request per
candidate issue, the worst poll).

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

from symphonyd.tracker.asana import AsanaAdapter
from symphonyd.tracker.gitlab import GitLabAdapter
from symphonyd.tracker.jira import JiraAdapter
from symphonyd.tracker.linear import LinearAdapter
from symphonyd.tracker.provider_config import TrackerSettings
from tests.tracker import fake_asana, fake_gitlab
from tests.tracker.fake_gitlab import FakeGitLab, gl_issue
from tests.tracker.fake_jira import CREDENTIAL, FakeJira, blocked_by, jira_issue
from tests.tracker.fake_linear import TOKEN, FakeLinear, linear_node

# Jira's search/jql answers at most 100 issues with these fields.
PAGE_SIZES = {"linear": (50, 250), "gitlab": (50, 100), "jira": (50, 100), "asana": (50, 100)}
GITLAB_STATES = {"Todo": "status::todo", "In Progress": "status::in-progress"}


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


def _serve(count: int, port_out: Any, stop: Any) -> None:
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


class StaticGitLab(FakeGitLab):
    """The tests' GitLab server with lookups by iid and the filtered list memoised."""

    def _matching(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        key = json.dumps({k: v for k, v in query.items() if k in ("state", "iids[]")})
        cache: dict[str, list[dict[str, Any]]] = self.__dict__.setdefault("_memo", {})
        if key not in cache:
            cache[key] = super()._matching(query)
        return cache[key]

    def answer(self, method, path, query, body, headers):
        if path.endswith("/links"):  # skip the linear scan of the tests' server
            if headers.get("PRIVATE-TOKEN") != fake_gitlab.TOKEN:
                return 401, {}, {"message": "401 Unauthorized"}
            iid = int(path.rsplit("/", 2)[1])
            return 200, {}, self.links.get(iid, [])
        return super().answer(method, path, query, body, headers)


def _serve_gitlab(count: int, port_out: Any, stop: Any) -> None:
    issues = []
    links: dict[int, list[dict[str, Any]]] = {}
    for n in range(1, count + 1):
        label = "status::todo" if n % 3 else "status::in-progress"
        issues.append(gl_issue(n, labels=(label, "backend", "priority::2")))
        if n % 7 == 0:
            links[n] = [{**issues[-2], "link_type": "is_blocked_by", "issue_link_id": n}]
    with StaticGitLab(issues) as srv:
        srv.links = links
        port_out.send(srv.port)
        stop.wait()


async def _poll_gitlab(port: int, page_size: int, blockers: str = "none") -> int:
    settings = TrackerSettings(
        "gitlab",
        {
            "endpoint": f"http://127.0.0.1:{port}",
            "project": fake_gitlab.PROJECT,
            "state_labels": GITLAB_STATES,
            "page_size": page_size,
            "blockers": blockers,
            "timeout_ms": 120_000,
        },
        ("Todo", "In Progress"),
        ("Closed",),
    )
    adapter = GitLabAdapter(settings, {"GITLAB_TOKEN": fake_gitlab.TOKEN})
    try:
        issues = await adapter.fetch_issues_by_states(["Todo", "In Progress"])
    finally:
        await adapter.aclose()
    return len(issues)


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


def _serve_asana(count: int, port_out: Any, stop: Any) -> None:
    """The same board shape in Asana's: two sections, every 7th task depending on the one
    before (its completion and section inline, as the adapter asks for them)."""
    tasks: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        task = fake_asana.asana_task(n, section="To do" if n % 3 else "Doing")
        if n % 7 == 0:
            prev = tasks[-1]
            task["dependencies"] = [
                {"gid": prev["gid"], "completed": False, "memberships": prev["memberships"]}
            ]
        tasks.append(task)
    with fake_asana.FakeAsana(tasks) as srv:
        port_out.send(srv.port)
        stop.wait()


async def _poll_asana(port: int, page_size: int) -> int:
    settings = TrackerSettings(
        "asana",
        {
            "endpoint": f"http://127.0.0.1:{port}/api/1.0",
            "workspace": fake_asana.WORKSPACE,
            "project": fake_asana.PROJECT,
            "page_size": page_size,
            "timeout_ms": 120_000,
        },
        ("To do", "Doing"),
        ("Done",),
    )
    adapter = AsanaAdapter(settings, {"ASANA_TOKEN": fake_asana.TOKEN})
    try:
        issues = await adapter.fetch_issues_by_states(["To do", "Doing"])
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


async def _poll_linear(port: int, page_size: int) -> int:
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


def _measure(args: argparse.Namespace, poll: Any, label: str) -> dict[str, Any]:
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        got = asyncio.run(poll())
        times.append(time.perf_counter() - start)
        assert got == args.issues, got
    tracemalloc.start()
    asyncio.run(poll())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    median = statistics.median(times)
    print(
        f"{label}: median {median:.2f}s, "
        f"{args.issues / median:.0f} issues/s, peak {peak / 2**20:.1f} MiB traced"
    )
    return {
        "seconds_median": round(median, 3),
        "seconds_min": round(min(times), 3),
        "issues_per_second": round(args.issues / median),
        "peak_traced_mib": round(peak / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=sorted(PAGE_SIZES), default="linear")
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    serve = {"gitlab": _serve_gitlab, "jira": _serve_jira, "asana": _serve_asana}.get(
        args.kind, _serve
    )
    server = ctx.Process(target=serve, args=(args.issues, send, stop), daemon=True)
    server.start()
    try:
        if not recv.poll(120):
            raise SystemExit(f"fake {args.kind} server did not start")
        port = recv.recv()
        results: dict[str, Any] = {"kind": args.kind, "issues": args.issues}
        for size in PAGE_SIZES[args.kind]:
            if args.kind == "gitlab":
                poll: Any = lambda size=size: _poll_gitlab(port, size)  # noqa: E731
            elif args.kind == "jira":
                poll = lambda size=size: _poll_jira(port, size)  # noqa: E731
            elif args.kind == "asana":
                poll = lambda size=size: _poll_asana(port, size)  # noqa: E731
            else:
                poll = lambda size=size: _poll_linear(port, size)  # noqa: E731
            results[f"page_{size}"] = {
                "pages": -(-args.issues // size),
                **_measure(args, poll, f"page_size={size}"),
            }
        if args.kind == "gitlab":
            size = PAGE_SIZES["gitlab"][-1]
            results[f"page_{size}_links"] = _measure(
                args, lambda: _poll_gitlab(port, size, "links"), f"page_size={size} links"
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
