"""Choosing a host for each run of a batch (design 1100): ``HostPool.placement``.

The placement keeps a heap instead of scanning every host per run (bench/remote_dispatch.py
found the scan growing with the number of workers). Its choices must be exactly the
rule's: the preferred host when it is usable and has room, else the least loaded usable host
with room, the first configured among equals, and nothing when every usable host is full.
The rule is written out plainly here and compared choice by choice over random batches.
The wired behaviour (spreading within caps, waiting, retries preferring their host) is
proven through the dispatcher's wiring in test_worker_hosts.py.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from symphonyd.dispatcher.hosts import Host, HostPool
from tests.dispatcher.doubles import MemoryLauncher

NAMES = [f"w{i}" for i in range(8)]


def by_the_rule(
    order: list[str], usable: set[str], used: Counter[str], cap: int | None, prefer: str | None
) -> str | None:
    best: str | None = None
    for name in order:
        if name not in usable or (cap is not None and used[name] >= cap):
            continue
        if name == prefer:
            return name
        if best is None or used[name] < used[best]:
            best = name
    return best


@given(
    st.integers(min_value=1, max_value=8),
    st.lists(st.integers(min_value=0, max_value=6), min_size=8, max_size=8),
    st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
    st.sets(st.sampled_from(NAMES)),
    st.lists(st.one_of(st.none(), st.sampled_from([*NAMES, "gone"])), max_size=40),
)
def test_each_choice_is_the_rules_choice(
    n: int,
    loads: list[int],
    cap: int | None,
    down: set[str],
    prefers: list[str | None],
) -> None:
    order = NAMES[:n]
    pool = HostPool([Host(name, MemoryLauncher(), remote=True) for name in order], per_host=cap)
    for name in order:
        pool.hosts[name].connected = name not in down
        pool.load[name] = loads[NAMES.index(name)]
    usable = {name for name in order if name not in down}
    used = Counter(pool.load)
    placement = pool.placement(now_ms=0)
    for prefer in prefers:
        expected = by_the_rule(order, usable, used, cap, prefer)
        assert placement.take(prefer) == expected
        if expected is not None:
            used[expected] += 1
    assert pool.load == Counter({n: loads[NAMES.index(n)] for n in order})  # only reserved


def test_a_drained_or_backed_off_host_takes_nothing() -> None:
    pool = HostPool([Host(n, MemoryLauncher(), remote=True, connected=True) for n in NAMES[:3]],
                    per_host=2)  # fmt: skip
    pool.hosts["w0"].drained = True
    pool.unreachable("w1", now_ms=0)
    placement = pool.placement(now_ms=1)
    assert [placement.take("w0"), placement.take("w1"), placement.take(), placement.take()] == [
        "w2",
        "w2",
        None,
        None,
    ]
