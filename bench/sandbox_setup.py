"""Sandbox setup/teardown latency and launcher memory (root only).

For 1, 10 and 50 agents started together, time each agent's ``SandboxManager.setup`` (netns +
veth + nftables elements + resolver + proxy listeners) and ``teardown``; report p50/p95 in
milliseconds over all agents of all rounds. Then hold 50 live sandboxes and report this
process's RSS against its RSS before any sandbox. No traffic leaves the host: the resolver's
upstream is never queried. With ``--resources`` every sandbox also gets its cgroup with the
default ``sandbox.resources`` limits (the bubblewrap path, ``cgroups.py``).

Run: .venv/bin/python bench/sandbox_setup.py [--resources]    (last line: RESULT {json})
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # type: ignore[import-untyped]

from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.launcher.sandbox.addresses import AddressPool
from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.egress_policy import build_policy
from symphonyd.launcher.sandbox.manager import SandboxManager

ROUNDS = {1: 5, 10: 3, 50: 2}
T = TypeVar("T")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def timed(coro: Awaitable[T], key: str, out: dict[str, float]) -> T:
    start = time.perf_counter()
    value = await coro
    out[key] = (time.perf_counter() - start) * 1000
    return value


async def main(resources: ResourcesConfig | None) -> dict[str, object]:
    audit: list[dict[str, object]] = []
    manager = SandboxManager(
        upstream=UpstreamResolver([("127.0.0.1", 53)]),
        audit=audit.append,
        pool=AddressPool("100.127.64.0/20"),
    )
    await manager.start()
    policy = build_policy(allowed_domains=["api.openai.com"])
    results: dict[str, object] = {}
    try:
        for n, rounds in ROUNDS.items():
            setup_ms: list[float] = []
            teardown_ms: list[float] = []
            batch_ms: list[float] = []
            for r in range(rounds):
                times: dict[str, float] = {}
                t0 = time.perf_counter()
                handles = await asyncio.gather(
                    *(
                        timed(
                            manager.setup(f"bench-{n}-{r}-{i}", policy, resources), f"s{i}", times
                        )
                        for i in range(n)
                    )
                )
                batch_ms.append((time.perf_counter() - t0) * 1000)
                await asyncio.gather(
                    *(timed(manager.teardown(h), f"t{i}", times) for i, h in enumerate(handles))
                )
                setup_ms += [v for k, v in times.items() if k.startswith("s")]
                teardown_ms += [v for k, v in times.items() if k.startswith("t")]
            results[f"agents_{n}"] = {
                "setup_p50_ms": pct(setup_ms, 0.5),
                "setup_p95_ms": pct(setup_ms, 0.95),
                "teardown_p50_ms": pct(teardown_ms, 0.5),
                "teardown_p95_ms": pct(teardown_ms, 0.95),
                "all_ready_ms_median": round(statistics.median(batch_ms), 1),
                "samples": len(setup_ms),
            }
        proc = psutil.Process()
        before = proc.memory_info().rss
        handles = await asyncio.gather(
            *(manager.setup(f"live-{i}", policy, resources) for i in range(50))
        )
        await asyncio.sleep(0.5)
        with_50 = proc.memory_info().rss
        results["rss_mb_before"] = round(before / 2**20, 1)
        results["rss_mb_with_50_live"] = round(with_50 / 2**20, 1)
        results["rss_kb_per_sandbox"] = round((with_50 - before) / 1024 / 50, 1)
        results["open_fds_with_50_live"] = proc.num_fds()
        results["threads"] = proc.num_threads()
        await asyncio.gather(*(manager.teardown(h) for h in handles))
    finally:
        await manager.close()
        manager.firewall.remove_table()
    return results


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, nftables)")
    limits = ResourcesConfig() if "--resources" in sys.argv[1:] else None
    out = asyncio.run(asyncio.wait_for(main(limits), 600))
    out["cgroups"] = limits is not None
    for key, value in out.items():
        print(f"{key}: {value}")
    print("RESULT " + json.dumps(out, sort_keys=True))
