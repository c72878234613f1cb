"""The pure parts of the per-agent egress bounds: audit aggregation and the answer cache.

The wired behaviour (real sandboxes, the real audit chain) is test_egress_fairness.py; these
pin the edge cases that are slow to reach there: budgets, groups, TTLs, eviction.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from typing import Any

from symphonyd.launcher.sandbox.audit_limit import COUNTS_PER_RECORD, MAX_COARSE, AgentAuditLimiter
from symphonyd.launcher.sandbox.dns import UpstreamError
from symphonyd.launcher.sandbox.dns_cache import MAX_TTL, NEGATIVE_TTL, AgentLookup, Answers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def total(records: list[dict[str, Any]]) -> int:
    full = sum(1 for r in records if r["type"] != "egress_summary")
    return full + sum(int(r["total"]) for r in records if r["type"] == "egress_summary")


def test_repeats_are_counted_and_every_decision_is_accounted_for() -> None:
    out: list[dict[str, Any]] = []
    clock = Clock()
    limiter = AgentAuditLimiter("a", out.append, interval_s=60, full_records=3, clock=clock)
    same = {"type": "egress_deny", "agent_id": "a", "via": "dns", "host": "x.test", "reason": "r"}
    for _ in range(100):
        limiter(dict(same))
    for n in range(500):  # distinct names: 2 more in full, then one group
        limiter({**same, "host": f"n{n}.x.test"})
    assert len(out) == 3
    clock.now += 61
    limiter({**same, "host": "later.test"})  # a new interval flushes the old one first
    summary = out[3]
    assert summary["type"] == "egress_summary" and summary["interval_s"] == 60
    assert {"host": "x.test", "count": 99}.items() <= summary["counts"][0].items()
    assert summary["counts"][1]["not_in_full"] and summary["counts"][1]["count"] == 498
    assert out[4]["host"] == "later.test"
    limiter.close()
    assert total(out) == 601
    assert sum(r["type"] == "egress_summary" for r in out) == 1  # nothing left to flush


def test_groups_and_summary_records_are_bounded() -> None:
    out: list[dict[str, Any]] = []
    limiter = AgentAuditLimiter("a", out.append, full_records=100, clock=Clock())
    for n in range(100):
        limiter({"type": "egress_deny", "host": f"h{n}", "reason": "r"})
        limiter({"type": "egress_deny", "host": f"h{n}", "reason": "r"})
    for n in range(200):  # past the budget, every reason a new group
        limiter({"type": "egress_deny", "host": "h", "reason": f"reason{n}"})
    limiter.close()
    summaries = [r for r in out if r["type"] == "egress_summary"]
    entries = [c for s in summaries for c in s["counts"]]
    assert len(entries) == 100 + MAX_COARSE + 1  # the repeats, the groups, one "other"
    assert all(len(s["counts"]) <= COUNTS_PER_RECORD for s in summaries)
    assert total(out) == 400


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Upstream:
    def __init__(self, rcode: int = 0, ttl: int = 3600, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.rcode, self.ttl, self.fail = rcode, ttl, fail
        self.gate: asyncio.Event | None = None

    async def resolve_a(self, name: str) -> tuple[int, Answers]:
        self.calls.append(name)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise UpstreamError("down")
        if self.rcode:
            return self.rcode, []
        return 0, [(ipaddress.IPv4Address("198.18.1.10"), self.ttl)]


def test_ttl_is_capped_and_negative_answers_expire_sooner() -> None:
    clock = Clock()
    up = Upstream()
    lookup = AgentLookup(up, clock=clock)
    assert run(lookup.resolve_a("a.test"))[1][0][1] == 3600  # passed on; the resolver caps
    clock.now += MAX_TTL - 1
    assert run(lookup.resolve_a("A.test"))[1][0][1] == 1 and up.calls == ["a.test"]
    clock.now += 2
    run(lookup.resolve_a("a.test"))
    assert len(up.calls) == 2
    nx = Upstream(rcode=3)
    lookup = AgentLookup(nx, clock=clock)
    assert run(lookup.resolve_a("b.test")) == (3, [])
    clock.now += NEGATIVE_TTL - 1
    run(lookup.resolve_a("b.test"))
    clock.now += 2
    run(lookup.resolve_a("b.test"))
    assert nx.calls == ["b.test", "b.test"]


def test_failures_and_servfail_are_not_cached_and_the_cache_is_bounded() -> None:
    for up in (Upstream(fail=True), Upstream(rcode=2)):
        lookup = AgentLookup(up)
        for _ in range(2):
            with contextlib.suppress(UpstreamError):
                run(lookup.resolve_a("c.test"))
        assert len(up.calls) == 2
    lookup = AgentLookup(Upstream(), cache_entries=3)

    async def many() -> None:
        for n in range(10):
            await lookup.resolve_a(f"n{n}.test")

    run(many())
    assert lookup.cached() == 3


def test_one_query_per_name_and_a_bounded_number_in_flight() -> None:
    up = Upstream()
    lookup = AgentLookup(up, inflight=2)

    async def scenario() -> None:
        up.gate = asyncio.Event()
        same = [asyncio.ensure_future(lookup.resolve_a("same.test")) for _ in range(50)]
        other = [asyncio.ensure_future(lookup.resolve_a(f"o{n}.test")) for n in range(5)]
        await asyncio.sleep(0.01)
        assert len(up.calls) == 2  # one for same.test, one other; the rest wait their turn
        up.gate.set()
        await asyncio.gather(*same, *other)

    run(scenario())
    assert up.calls.count("same.test") == 1 and len(up.calls) == 6
    assert lookup.counters.joined == 49
