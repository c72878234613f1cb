"""The run loop every daemon's ``__main__`` shares.

    def main(argv=None) -> int:
        args = parse_args(argv)                     # DaemonArgumentParser: bad args exit 78
        return run_daemon("tracker", functools.partial(startup, args=args))

``startup(daemon)`` (the package's ``daemon.py``) loads the host config, opens sockets and
spawns the daemon's tasks, then returns; READY=1 is sent only after it returns, so systemd
orders dependants after a daemon that can really serve. SIGTERM/SIGINT start a graceful stop
(STOPPING=1, shutdown callbacks in reverse order, each bounded by ``stop_timeout``); a second
signal abandons the graceful stop. Exit codes: docs/design/0201-logs-notify-exit-codes.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pwd
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

from symphonyd.core.errors import ConfigError, SymphonyError, WorkflowError
from symphonyd.core.hostconfig import HostConfig
from symphonyd.runtime.hostconfig_file import load_host_config
from symphonyd.runtime.instance_lock import AlreadyRunning
from symphonyd.runtime.logging import log_event, setup_logging
from symphonyd.runtime.notify import Notifier

T = TypeVar("T")
log = logging.getLogger("symphonyd.daemon")

EXIT_OK = 0
EXIT_FAILURE = 1  # a typed runtime failure, or the graceful stop did not finish in time
EXIT_SOFTWARE = 70  # sysexits EX_SOFTWARE: an unexpected exception (a bug)
EXIT_TEMPFAIL = 75  # sysexits EX_TEMPFAIL: another instance holds the state (retry later)
EXIT_CONFIG = 78  # sysexits EX_CONFIG: refused to start on invalid configuration
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

ShutdownHook = Callable[[], Awaitable[None]]


class DaemonArgumentParser(argparse.ArgumentParser):
    """A daemon's command line is configuration (ExecStart=): a bad one exits 78, not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"{self.prog}: invalid_arguments: {message}\n")


def system_uid(user: str) -> int:
    """The uid of a system user the package creates; a missing one is a config error."""
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ConfigError(
            f"system user {user!r} does not exist (the package creates it: "
            "systemd-sysusers; or pass the uid explicitly)",
            code="unknown_user",
        ) from None


def exit_code_for(error: BaseException) -> int:
    """The process exit code a failure means (the table in note 0201)."""
    if isinstance(error, ConfigError | WorkflowError):
        return EXIT_CONFIG
    if isinstance(error, AlreadyRunning):
        return EXIT_TEMPFAIL
    if isinstance(error, SymphonyError):
        return EXIT_FAILURE
    return EXIT_SOFTWARE


class Daemon:
    """Handed to the startup coroutine: status, background tasks, cleanup, stopping."""

    def __init__(self, name: str, notifier: Notifier) -> None:
        self.name = name
        self.notifier = notifier
        self.stop_reason: str | None = None
        self.exit_code = EXIT_OK
        self.last_status: str | None = None  # what `systemctl status` shows once READY
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._hooks: list[tuple[str, ShutdownHook]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._health: list[Callable[[], bool]] = []

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_stopping(self) -> None:
        await self._stop.wait()

    def status(self, text: str) -> None:
        self.last_status = text
        self.notifier.status(text)

    def load_host_config(self, path: str | None) -> HostConfig:
        """Read the host config (ConfigError: exit 78) and apply its ``log_level``.

        ``SYMPHONY_LOG_LEVEL``, when set to a known level, still wins: it is the per-unit
        override (``systemctl edit``) and the host config is the machine-wide default.
        """
        loaded = load_host_config(path)
        if os.environ.get("SYMPHONY_LOG_LEVEL", "").strip().lower() not in LOG_LEVELS:
            logging.getLogger().setLevel(LOG_LEVELS[loaded.config.log_level.lower()])
        for warning in loaded.warnings:
            log_event(log, "host_config", level=logging.WARNING, warning=warning)
        return loaded.config

    def add_health_check(self, healthy: Callable[[], bool]) -> None:
        """While ``healthy()`` is false the watchdog ping is withheld (systemd restarts us)."""
        self._health.append(healthy)

    def healthy(self) -> bool:
        return all(check() for check in self._health)

    def on_shutdown(self, name: str, hook: ShutdownHook) -> None:
        """Run ``hook`` on stop; hooks run in reverse registration order (like a stack)."""
        self._hooks.append((name, hook))

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """A long-running task; if it fails, the daemon stops with a failure exit code."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def stop(self, reason: str = "requested") -> None:
        if self._stop.is_set():
            if reason.startswith("SIG"):
                log_event(log, "shutdown", level=logging.WARNING, outcome="forced", reason=reason)
                self.exit_code = self.exit_code or EXIT_FAILURE
                self._force.set()
            return
        self.stop_reason = reason
        self._stop.set()

    def fail(self, error: BaseException) -> None:
        """Stop because something broke; the exit code says what kind of break."""
        if self.exit_code == EXIT_OK:
            self.exit_code = exit_code_for(error)
        self.stop("failure")

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        _log_failure("task", exc, task=task.get_name())
        self.fail(exc)


def run_daemon(
    name: str,
    startup: Callable[[Daemon], Awaitable[None]],
    *,
    stop_timeout: float = 30.0,
    log_level: int | None = None,
) -> int:
    """Run one daemon to completion and return its process exit code.

    The log level is ``log_level``, else ``SYMPHONY_LOG_LEVEL`` (debug, info, warning,
    error), else info.
    """
    level, bad_level = _log_level(log_level)
    setup_logging(name, level=level)
    if bad_level:
        log_event(log, "startup", level=logging.WARNING, ignored="SYMPHONY_LOG_LEVEL")
    notifier = Notifier.from_env()
    try:
        return asyncio.run(_serve(name, notifier, startup, stop_timeout))
    except KeyboardInterrupt:  # a SIGINT before the handlers were installed
        return EXIT_OK
    finally:
        notifier.close()


def _log_level(explicit: int | None) -> tuple[int, bool]:
    if explicit is not None:
        return explicit, False
    name = os.environ.get("SYMPHONY_LOG_LEVEL", "info").strip().lower()
    return LOG_LEVELS.get(name, logging.INFO), name not in LOG_LEVELS


async def _serve(
    name: str,
    notifier: Notifier,
    startup: Callable[[Daemon], Awaitable[None]],
    stop_timeout: float,
) -> int:
    daemon = Daemon(name, notifier)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop, sig.name)
    watchdog = asyncio.create_task(notifier.watchdog_loop(daemon.healthy), name="watchdog")
    log_event(log, "startup", outcome="starting")
    notifier.status("starting")
    if await _start(daemon, startup):
        notifier.ready(daemon.last_status or "running")
        log_event(log, "startup", outcome="ready")
        await daemon.wait_stopping()
    reason = daemon.stop_reason or "startup_failed"
    notifier.stopping(f"stopping: {reason}")
    log_event(log, "shutdown", outcome="started", reason=reason)
    await _shut_down(daemon, stop_timeout)
    watchdog.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watchdog
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log_event(log, "shutdown", outcome="completed", exit_code=daemon.exit_code)
    return daemon.exit_code


async def _start(daemon: Daemon, startup: Callable[[Daemon], Awaitable[None]]) -> bool:
    """Run startup, interruptible by a stop signal; True once the daemon may report READY."""
    task: asyncio.Task[None] = asyncio.ensure_future(startup(daemon))
    stop = asyncio.create_task(daemon.wait_stopping())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return False
    exc = task.exception()
    if exc is None:
        return not daemon.stopping
    _log_failure("startup", exc)
    daemon.fail(exc)
    return False


async def _shut_down(daemon: Daemon, stop_timeout: float) -> None:
    for hook_name, hook in reversed(daemon._hooks):
        hook_task = asyncio.ensure_future(hook())
        force = asyncio.create_task(daemon._force.wait())
        done, _ = await asyncio.wait(
            {hook_task, force}, timeout=stop_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        force.cancel()
        if hook_task not in done:
            hook_task.cancel()
            log_event(log, "shutdown", level=logging.ERROR, outcome="timed_out", hook=hook_name)
            daemon.exit_code = daemon.exit_code or EXIT_FAILURE
        elif not hook_task.cancelled() and (exc := hook_task.exception()) is not None:
            _log_failure("shutdown", exc, hook=hook_name)
            daemon.exit_code = daemon.exit_code or EXIT_FAILURE
        if daemon._force.is_set():
            break
    for task in list(daemon._tasks):
        task.cancel()
    if daemon._tasks:
        await asyncio.wait(set(daemon._tasks), timeout=stop_timeout)


def _log_failure(event: str, exc: BaseException, **fields: Any) -> None:
    # A typed error is an expected failure: its code and message say it all. Anything else
    # is a bug and gets its traceback.
    if isinstance(exc, SymphonyError):
        log_event(
            log,
            event,
            level=logging.ERROR,
            outcome="failed",
            error_code=exc.error_code,
            error=exc.message,
            **fields,
        )
    else:
        log_event(log, event, level=logging.ERROR, outcome="failed", exc_info=exc, **fields)
