"""Hostile streams against both parsers: nothing escapes, memory stays bounded (seed 000)."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphonyd.launcher.agents.claude import ClaudeSession, ClaudeSessionConfig, TurnState
from symphonyd.launcher.agents.codex import CodexSession, CodexSessionConfig
from symphonyd.launcher.agents.process import AgentProcess
from symphonyd.launcher.agents.stream import (
    MAX_DEPTH,
    LineSplitter,
    StderrRing,
    StreamStats,
    decode_object,
    too_deep,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# Objects that look like protocol messages with the wrong types in every slot.
METHODS = [
    "turn/completed",
    "thread/tokenUsage/updated",
    "account/rateLimits/updated",
    "item/completed",
    "error",
    "item/tool/call",
    "item/commandExecution/requestApproval",
    "item/tool/requestUserInput",
]
protocolish = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "method": st.sampled_from(METHODS) | json_values,
        "params": json_values,
        "result": json_values,
        "error": json_values,
        "type": st.sampled_from(["result", "assistant", "system", "control_request", "user"])
        | json_values,
        "usage": json_values,
        "is_error": json_values,
        "subtype": json_values,
        "message": json_values,
        "request": json_values,
        "session_id": json_values,
    },
)
lines = st.one_of(
    st.binary(max_size=200),
    protocolish.map(lambda d: json.dumps(d).encode()),
    st.integers(1, 5000).map(lambda n: b"[" * n),
    st.just(b"\xff\xfe\xfd"),
)


def _dummy_process() -> AgentProcess:
    return AgentProcess("true", Path("/"), {})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(max_size=512), max_size=30), cap=st.integers(1, 64))
def test_splitter_never_returns_a_line_over_the_cap(chunks: list[bytes], cap: int) -> None:
    stats = StreamStats()
    splitter = LineSplitter(stats, cap)
    out = [line for c in chunks for line in splitter.feed(c)] + splitter.finish()
    assert all(len(line) <= cap and b"\n" not in line for line in out)
    joined = b"".join(chunks)
    # every complete line is either returned or counted as oversized
    assert len(out) + stats.oversized >= joined.count(b"\n")
    for line in out:
        decode_object(line, stats)


@settings(max_examples=200, deadline=None)
@given(data=st.lists(lines, max_size=40))
def test_codex_dispatch_survives_anything(data: list[bytes]) -> None:
    async def feed() -> None:
        s = CodexSession(Path("/"), CodexSessionConfig(), {})
        s._proc = _dummy_process()  # stats only: replies go nowhere and are dropped
        stats = s._proc.stats
        for line in data:
            obj = decode_object(line, stats)
            if obj is not None:
                s._dispatch(obj)
        await asyncio.sleep(0)
        await asyncio.gather(*s._background, return_exceptions=False)
        tokens = s.tokens
        assert tokens.total_tokens >= 0 and tokens.input_tokens >= 0

    asyncio.run(feed())


@settings(max_examples=200, deadline=None)
@given(data=st.lists(lines, max_size=40))
def test_claude_handler_survives_anything(data: list[bytes]) -> None:
    async def feed() -> None:
        s = ClaudeSession(Path("/"), ClaudeSessionConfig(), {})
        s._proc = _dummy_process()
        turn = TurnState(None)
        for line in data:
            obj = decode_object(line, s._proc.stats)
            if obj is not None:
                result = await s.handle(obj, turn)
                assert result is None or result.status in ("completed", "failed", "cancelled")
        assert s.tokens.total_tokens >= 0

    asyncio.run(feed())


def test_memory_stays_bounded_on_a_huge_line_and_deep_nesting() -> None:
    stats = StreamStats()
    splitter = LineSplitter(stats, 1024 * 1024)
    tracemalloc.start()
    try:
        chunk = b"y" * 65536
        for _ in range(512):  # 32 MiB without a newline
            splitter.feed(chunk)
        splitter.feed(b"\n" + b"[" * 500_000 + b"\n")
        out = splitter.feed(b'{"ok": 1}\n')
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.oversized == 1
    assert peak < 4 * 1024 * 1024  # never near the 32 MiB that went through
    assert decode_object(out[0], stats) == {"ok": 1}


def test_stderr_ring_keeps_only_the_tail() -> None:
    ring = StderrRing(8192)
    for i in range(10000):
        ring.feed(f"line {i}\n".encode())
    ring.feed(b"\xff\xfe bad bytes\n")
    assert len(ring.text().encode()) <= 8192 + 16
    assert "line 9999" in ring.text() and "line 0\n" not in ring.text()
    assert "bad bytes" in ring.tail()


@settings(max_examples=200, deadline=None)
@given(depth=st.integers(0, 600), filler=st.text(alphabet='[]{}"\\ab', max_size=20))
def test_depth_guard_matches_real_nesting(depth: int, filler: str) -> None:
    doc: Any = filler
    for i in range(depth):
        doc = [doc] if i % 2 else {"k": doc}
    line = json.dumps(doc).encode()
    stats = StreamStats()
    assert too_deep(line) == (depth > MAX_DEPTH)
    decoded = decode_object(line, stats)
    if depth > MAX_DEPTH:
        assert decoded is None and stats.malformed == 1
