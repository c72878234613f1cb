"""Throughput and memory of the Codex stdout parser on a recorded real session.

Replays bench/data/codex_session.ndjson (recorded from codex 0.169.0 by
bench/record_codex_session.py) replicated to about TARGET_MB, in 64 KiB chunks as the pipe
reader delivers them, through the same path as production: LineSplitter -> decode_object ->
CodexSession._dispatch (token, rate-limit, item and turn handling, server-request answers).
Reports MB/s, lines/s and events/s for the parse-only and the full path, and the tracemalloc
peak of the full path. Run: .venv/bin/python bench/stream_parse.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from symphonyd.launcher.agents.codex import CodexSession, CodexSessionConfig
from symphonyd.launcher.agents.process import AgentProcess
from symphonyd.launcher.agents.session import AgentEvent
from symphonyd.launcher.agents.stream import (
    READ_CHUNK,
    LineSplitter,
    StreamStats,
    decode_object,
)

DATA = Path(__file__).resolve().parent / "data" / "codex_session.ndjson"
TARGET_MB = 8
ROUNDS = 3


def corpus() -> bytes:
    one = DATA.read_bytes()
    copies = max(1, (TARGET_MB * 1024 * 1024) // len(one))
    return one * copies


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + READ_CHUNK] for i in range(0, len(data), READ_CHUNK)]


def parse_only(parts: list[bytes]) -> tuple[float, int]:
    stats = StreamStats()
    splitter = LineSplitter(stats)
    objects = 0
    start = time.perf_counter()
    for part in parts:
        for line in splitter.feed(part):
            if decode_object(line, stats) is not None:
                objects += 1
    return time.perf_counter() - start, objects


async def full_path(parts: list[bytes]) -> tuple[float, int, int]:
    events: list[AgentEvent] = []
    session = CodexSession(Path("/"), CodexSessionConfig(), {}, on_event=events.append)
    session._proc = AgentProcess("true", Path("/"), {})  # replies are dropped: no process
    stats = session._proc.stats
    splitter = LineSplitter(stats)
    lines = 0
    start = time.perf_counter()
    for part in parts:
        for line in splitter.feed(part):
            lines += 1
            obj = decode_object(line, stats)
            if obj is not None:
                session._dispatch(obj)
        await asyncio.sleep(0)  # let server-request answers run, as the reader loop would
    await asyncio.gather(*session._background)
    return time.perf_counter() - start, lines, len(events)


def main() -> None:
    data = corpus()
    parts = chunks(data)
    mb = len(data) / (1024 * 1024)
    parse_times, full_times = [], []
    objects = lines = events = 0
    for _ in range(ROUNDS):
        t, objects = parse_only(parts)
        parse_times.append(t)
        t, lines, events = asyncio.run(full_path(parts))
        full_times.append(t)
    tracemalloc.start()
    asyncio.run(full_path(parts))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    best_parse, best_full = min(parse_times), min(full_times)
    result = {
        "input_mb": round(mb, 2),
        "lines": lines,
        "parse_mb_per_s": round(mb / best_parse, 1),
        "parse_lines_per_s": round(objects / best_parse),
        "full_mb_per_s": round(mb / best_full, 1),
        "full_lines_per_s": round(lines / best_full),
        "events_emitted": events,
        "events_per_s": round(events / best_full),
        "peak_tracemalloc_kib_full_path": round(peak / 1024),
        "note": "peak excludes the input corpus, which is held in memory before tracing",
    }
    print(f"input {mb:.1f} MiB, {lines} lines; best of {ROUNDS}")
    print(f"parse only : {result['parse_mb_per_s']} MB/s, {result['parse_lines_per_s']} lines/s")
    print(
        f"full path  : {result['full_mb_per_s']} MB/s, {result['full_lines_per_s']} lines/s, "
        f"{result['events_per_s']} events/s"
    )
    print(f"peak memory (tracemalloc, full path): {result['peak_tracemalloc_kib_full_path']} KiB")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
