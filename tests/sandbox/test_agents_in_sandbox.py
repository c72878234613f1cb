"""The real agent CLIs start inside the sandbox (read-only system, no network but the proxy)."""

from __future__ import annotations

import asyncio

import pytest

from symphonyd.launcher.sandbox import bwrap
from tests.conftest import agent_binary
from tests.sandbox.conftest import Launcher, World, agent_policy

pytestmark = [pytest.mark.root, pytest.mark.agents]


@pytest.mark.parametrize("name", ["codex", "claude"])
def test_agent_cli_runs_in_the_sandbox(launcher: Launcher, world: World, name: str):
    binary = agent_binary(name)
    if binary is None:
        pytest.skip(f"{name} is not installed")
    handle = launcher.setup(f"cli-{name}", agent_policy())
    try:

        async def go() -> tuple[int, bytes, bytes]:
            proc = await bwrap.spawn(
                handle,
                world.view(),
                [binary, "--version"],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out, err

        rc, out, err = launcher.loop.run(go(), timeout=90)
        assert rc == 0, err.decode()[-2000:]
        assert any(ch.isdigit() for ch in out.decode()), out
    finally:
        launcher.teardown(handle)
