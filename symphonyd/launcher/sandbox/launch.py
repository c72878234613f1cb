"""The one way to start a sandboxed process: set up the sandbox, then spawn, never the reverse.

If any setup step fails, :func:`launch` raises before a process exists (fail closed); if the
spawn fails, the sandbox is torn down again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.launcher.sandbox import bwrap
from symphonyd.launcher.sandbox.egress_policy import EgressPolicy
from symphonyd.launcher.sandbox.fs_view import FsView
from symphonyd.launcher.sandbox.sandbox import SandboxHandle, SandboxManager


async def launch(
    manager: SandboxManager,
    agent_id: str,
    policy: EgressPolicy,
    view: FsView | Callable[[], FsView],
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    resources: ResourcesConfig | None = None,
    **kwargs: Any,
) -> tuple[SandboxHandle, asyncio.subprocess.Process]:
    handle = await manager.setup(agent_id, policy, resources)
    try:
        fs = view() if callable(view) else view
        process = await bwrap.spawn(handle, fs, command, env=env, cwd=cwd, **kwargs)
    except BaseException:
        await manager.teardown(handle)
        raise
    return handle, process
