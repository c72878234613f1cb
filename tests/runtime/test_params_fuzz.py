"""Any JSON a peer sends as params for any registered method is either decoded or refused
with ``invalid_params``; and the server answers arbitrary frames without dying."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphonyd.core.api import audit, dispatcher, launcher, shared, tracker
from symphonyd.core.wire import METHODS, ProtocolError, decode_params
from tests.runtime.ipc_helpers import assert_healthy, run, serving

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

# METHODS holds a method once its API module is imported: these are all of them.
API_MODULES = (shared, tracker, dispatcher, launcher, audit)

# METHODS holds a method once its API module is imported: these are all of them.
API_MODULES = (shared, tracker, dispatcher, launcher, audit)


@pytest.mark.parametrize("name", sorted(METHODS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.dictionaries(st.text(max_size=16), JSON, max_size=5))
def test_decode_params_is_total(name: str, params: dict[str, Any]) -> None:
    try:
        decode_params(METHODS[name], params)
    except ProtocolError as exc:
        assert exc.error_code == "invalid_params"


FRAMES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda m, p, i: json.dumps({"v": 1, "id": i, "method": m, "params": p}).encode(),
        st.sampled_from([*sorted(METHODS), "nope"]),  # not test.echo: it can be told to wait
        st.dictionaries(st.text(max_size=8), JSON, max_size=4),
        st.integers(min_value=-5, max_value=2**40),
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(FRAMES, min_size=1, max_size=8))
def test_server_answers_arbitrary_frames(frames: list[bytes]) -> None:
    async def body(directory: Path) -> None:
        async with serving(directory) as (_server, path, _gates):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 22)
            payload = b"".join(f.replace(b"\n", b" ") + b"\n" for f in frames)
            writer.write(payload)
            await writer.drain()
            # Every non-blank line gets exactly one reply (result or typed error).
            expected = sum(1 for f in frames if f.replace(b"\n", b" ").strip())
            for _ in range(expected):
                line = await asyncio.wait_for(reader.readline(), 10)
                reply = json.loads(line)
                assert "result" in reply or reply["error"]["code"]
            writer.close()
            await assert_healthy(path)

    directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"syfz{os.getpid()}"
    directory.mkdir(exist_ok=True)
    try:
        run(body(directory))
    finally:
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()
