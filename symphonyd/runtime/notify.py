"""sd_notify(3) for the daemons: READY, STATUS, STOPPING and the watchdog keep-alive.

Wraps ``sdnotify`` (Debian python3-sdnotify), which silently swallows every error unless
``debug=True``. Here a failed notification is logged once, so an operator whose unit hangs
in "activating" can see why, and the daemon itself keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, MutableMapping

import sdnotify

from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.notify")
_NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _clean(text: str) -> str:
    # One assignment per line: a newline in a status text could forge "READY=1".
    flat = " ".join(text.splitlines()).replace("\x00", " ")
    # sdnotify encodes as latin-1; pre-encoding makes the datagram carry UTF-8 bytes.
    return flat.encode("utf-8", "replace").decode("latin-1")


class Notifier:
    """Talks to the service manager; a no-op (returning False) when not run by systemd."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._failed = False
        self._inner: sdnotify.SystemdNotifier | None = None
        if address and not address.startswith("@") and not os.path.exists(address):
            # Checked here because sdnotify would leak its socket on the failed connect().
            self._fail(FileNotFoundError(address))
        elif address:
            saved = os.environ.get("NOTIFY_SOCKET")
            os.environ["NOTIFY_SOCKET"] = address  # sdnotify only reads the environment
            try:
                self._inner = sdnotify.SystemdNotifier(debug=True)
            except Exception as exc:
                self._fail(exc)
            finally:
                if saved is None:
                    os.environ.pop("NOTIFY_SOCKET", None)
                else:
                    os.environ["NOTIFY_SOCKET"] = saved

    @classmethod
    def from_env(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        """Read NOTIFY_SOCKET / WATCHDOG_*; unset them so hooks and agents never inherit them."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        pid = env.get("WATCHDOG_PID")
        try:
            raw = int(env.get("WATCHDOG_USEC", "0"))
            if raw > 0 and (not pid or int(pid) == os.getpid()):
                usec = raw
        except ValueError:
            log_event(log, "watchdog", level=logging.WARNING, outcome="ignored", reason="bad_env")
        if unset:
            for key in _NOTIFY_ENV:
                env.pop(key, None)
        return cls(address, usec)

    def close(self) -> None:
        if self._inner is not None and self._inner.socket is not None:
            self._inner.socket.close()
        self._inner = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def enabled(self) -> bool:
        return self._inner is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram; False if not delivered."""
        if self._inner is None:
            return False
        try:
            self._inner.notify("\n".join(_clean(a) for a in assignments))
        except Exception as exc:
            self._fail(exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def _fail(self, exc: BaseException) -> None:
        if not self._failed:
            self._failed = True
            log_event(
                log,
                "sd_notify",
                level=logging.WARNING,
                outcome="failed",
                socket=self.address,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def watchdog_loop(self, healthy: Callable[[], bool] | None = None) -> None:
        """Ping at half the watchdog interval from the event loop until cancelled.

        Running on the loop is the point: a blocked loop stops the pings and systemd
        restarts the daemon. ``healthy`` may veto a ping (e.g. a stuck worker).
        """
        if self.watchdog_usec is None or not self.enabled:
            return
        interval = self.watchdog_usec / 2_000_000
        while True:
            if healthy is None or healthy():
                self.watchdog()
            else:
                log_event(log, "watchdog", level=logging.WARNING, outcome="withheld")
            await asyncio.sleep(interval)
