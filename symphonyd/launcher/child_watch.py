"""Agent exits through pidfds on the event loop instead of a waitpid thread per agent.

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
import logging
import os
import warnings

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
