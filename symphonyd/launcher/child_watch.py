"""Starting and watching the launcher's children: pidfds on the event loop instead of a
waitpid thread per agent, and a start that a stop cannot cut in half.

Python 3.11's default ``ThreadedChildWatcher`` starts one thread per child process that
blocks in ``waitpid``: with hundreds of agents that is hundreds of threads, a thread start
(about a tenth of a millisecond, in the event loop thread) per spawn and their stacks in the
launcher's memory. ``PidfdChildWatcher`` (Linux 5.3+) polls a pidfd per child on the loop
itself. Every subprocess the launcher starts (agents, hooks, sandbox helpers) is created on
this one loop, which is the watcher's one requirement. Where pidfds are unavailable the
default watcher stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import warnings
from typing import Any

log = logging.getLogger("symphonyd.launcher")


def use_pidfd_child_watcher() -> bool:
    """Install a PidfdChildWatcher on the running loop; False (default kept) if unsupported."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError) as exc:
        log.info("pidfd_open unavailable (%s); keeping the threaded child watcher", exc)
        return False
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # child watchers: deprecated in 3.12
        asyncio.set_child_watcher(watcher)
    return True


def kill_group(pgid: int) -> None:
    """SIGKILL to a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def start_process_group(argv: list[str], **kwargs: Any) -> asyncio.subprocess.Process:
    """``create_subprocess_exec`` (with ``start_new_session=True`` in ``kwargs``) that a
    cancellation cannot cut in half.

    Cancelled while the child is starting, asyncio kills only the child it forked, not its
    process group, and the caller never learns its pid: a hook's or an agent's background
    processes ran on after the run was stopped (issue 22.5). Here the start is finished
    first, then the whole group is killed, then the cancellation goes on."""
    task = asyncio.ensure_future(asyncio.create_subprocess_exec(*argv, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            proc = await task
            kill_group(proc.pid)
            await proc.wait()
        raise
