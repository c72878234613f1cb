"""Sandbox setup/teardown latency and launcher memory (root only).

For 1, 10 and 50 agents started together, time each agent's ``SandboxManager.setup`` (netns +
veth + nftables elements + resolver + proxy listeners) and ``teardown``; report p50/p95 in
milliseconds over all agents of all rounds. Then hold 50 live sandboxes and report this
process's RSS against its RSS before any sandbox. No traffic leaves the host: the resolver's
upstream is never queried. With ``--resources`` every sandbox also gets its cgroup with the
default ``sandbox.resources`` limits (the bubblewrap path, ``cgroups.py``).

Every round is run twice, alternating which goes first: with transparent interception off and
on (the default; one more listener and the ``intercept`` map elements in the same nftables
transaction, docs/design/0867), so one run shows what interception adds to setup.

Run: .venv/bin/python bench/sandbox_setup.py [--resources]    (last line: RESULT {json})
"""

from __future__ import annotations

import asyncio
import ipaddress
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
from symphonyd.launcher.sandbox.addresses import AddressPool, Lease
from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.egress_policy import EgressPolicy, build_policy
from symphonyd.launcher.sandbox.manager import SandboxManager
from symphonyd.launcher.sandbox.nft import Intercept

ROUNDS = {1: 10, 10: 4, 50: 2}
T = TypeVar("T")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def timed(coro: Awaitable[T], key: str, out: dict[str, float]) -> T:
    start = time.perf_counter()
    value = await coro
    out[key] = (time.perf_counter() - start) * 1000
    return value


async def one_round(
    manager: SandboxManager,
    policy: EgressPolicy,
    prefix: str,
    n: int,
    resources: ResourcesConfig | None,
    into: dict[str, list[float]],
) -> None:
    """Set up ``n`` sandboxes at once, then tear them down; per-agent times into ``into``."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    handles = await asyncio.gather(
        *(
            timed(manager.setup(f"{prefix}-{i}", policy, resources), f"s{i}", times)
            for i in range(n)
        )
    )
    into["batch"].append((time.perf_counter() - t0) * 1000)
    await asyncio.gather(
        *(timed(manager.teardown(h), f"t{i}", times) for i, h in enumerate(handles))
    )
    into["setup"] += [v for k, v in times.items() if k.startswith("s")]
    into["teardown"] += [v for k, v in times.items() if k.startswith("t")]


async def firewall_steps(manager: SandboxManager, policy: EgressPolicy) -> dict[str, object]:
    """The part of setup interception changes, without the kernel's namespace lock and the
    machine's load in the way: with 50 live sandboxes, one agent's nftables transaction and
    the drop-rule check, with and without the redirect elements (ms, median of 40)."""
    handles = await asyncio.gather(*(manager.setup(f"fw-{i}", policy) for i in range(50)))
    fw = manager.firewall
    spare = Lease(4000, ipaddress.IPv4Network("100.127.250.0/30"), *_hosts("100.127.250.0/30"))
    out: dict[str, object] = {}
    try:
        for label, intercept in (
            ("off", None),
            ("on", Intercept(manager.intercept_port, policy.ports)),
        ):
            times = []
            for _ in range(40):
                t0 = time.perf_counter()
                fw.add_agent(spare, manager.proxy_port, intercept)
                fw.verify()
                times.append((time.perf_counter() - t0) * 1000)
                fw.remove_agent(spare, manager.proxy_port)
            out[f"firewall_step_ms_intercept_{label}_50_live"] = round(statistics.median(times), 2)
    finally:
        await asyncio.gather(*(manager.teardown(h) for h in handles))
    return out


def _hosts(cidr: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    net = ipaddress.IPv4Network(cidr)
    return net[1], net[2]


async def main(resources: ResourcesConfig | None) -> dict[str, object]:
    audit: list[dict[str, object]] = []
    manager = SandboxManager(
        upstream=UpstreamResolver([("127.0.0.1", 53)]),
        audit=audit.append,
        pool=AddressPool("100.127.64.0/20"),
    )
    await manager.start()
    policy = build_policy(allowed_domains=["api.openai.com"])
    policies = {
        "intercept_off": build_policy(allowed_domains=["api.openai.com"], intercept=False),
        "intercept_on": policy,
    }
    results: dict[str, object] = {}
    try:
        for n, rounds in ROUNDS.items():
            samples: dict[str, dict[str, list[float]]] = {
                v: {"setup": [], "teardown": [], "batch": []} for v in policies
            }
            for r in range(rounds):
                order = list(policies) if r % 2 == 0 else list(reversed(policies))
                for variant in order:
                    await one_round(
                        manager,
                        policies[variant],
                        f"{variant}-{n}-{r}",
                        n,
                        resources,
                        samples[variant],
                    )
            for variant, got in samples.items():
                results[f"agents_{n}_{variant}"] = {
                    "setup_p50_ms": pct(got["setup"], 0.5),
                    "setup_p95_ms": pct(got["setup"], 0.95),
                    "teardown_p50_ms": pct(got["teardown"], 0.5),
                    "teardown_p95_ms": pct(got["teardown"], 0.95),
                    "all_ready_ms_median": round(statistics.median(got["batch"]), 1),
                    "samples": len(got["setup"]),
                }
            off, on = samples["intercept_off"], samples["intercept_on"]
            results[f"agents_{n}_intercept_setup_ratio"] = {
                "p50": round(pct(on["setup"], 0.5) / pct(off["setup"], 0.5), 3),
                "all_ready": round(
                    statistics.median(on["batch"]) / statistics.median(off["batch"]), 3
                ),
            }
        results.update(await firewall_steps(manager, policy))
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
