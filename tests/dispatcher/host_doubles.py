"""Worker hosts for dispatcher tests: a launcher stand-in behind a link stand-in per host.

Each host's launcher stand-in (the in-memory launcher double on a real Unix socket, as in
:mod:`socket_doubles`) sits behind a byte-splicing proxy on ``<runtime>/hosts/<name>.sock``
that behaves like the link daemon: every accepted connection is its own session to the
worker. The proxy can refuse new sessions (ssh cannot reach the worker: nothing is
delivered) and drop every session at once (a partition: the link's ssh sessions die), while
the launcher behind it keeps its runs, as a partitioned worker does until its lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from symphonyd.core.worker_hosts import WorkerHost, WorkerHosts
from tests.dispatcher.socket_doubles import SocketWorld

SUBSCRIBE = b"launcher.subscribe"


class HostStandIn(SocketWorld):
    """One worker: its launcher (reached only through :attr:`link_path`) and its link."""

    def __init__(self, runtime: Path, name: str) -> None:
        (runtime / "hosts").mkdir(exist_ok=True)
        backend = runtime / f"worker-{name}"
        backend.mkdir()
        super().__init__(backend)
        self.name = name
        self.link_path = runtime / "hosts" / f"{name}.sock"
        self.refusing = False  # new sessions are closed at once (ssh fails)
        self._sessions: dict[asyncio.StreamWriter, bool] = {}  # writer -> carries the stream
        self._link: asyncio.Server | None = None

    async def start(self) -> None:
        self.servers = {"launcher": self._launcher_server()}
        await self.servers["launcher"].start_path(self.path("launcher"))
        self._link = await asyncio.start_unix_server(self._session, path=str(self.link_path))

    async def close(self) -> None:
        self.drop_sessions()
        if self._link is not None:
            self._link.close()
        await super().close()

    def drop_sessions(self, *, keep_stream: bool = False) -> None:
        """The link's sessions die (all, or all but the event stream's)."""
        for writer, stream in list(self._sessions.items()):
            if not (keep_stream and stream):
                writer.close()

    def partition(self) -> None:
        self.refusing = True
        self.drop_sessions()

    def heal(self) -> None:
        self.refusing = False

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.path("launcher")))
        self._sessions[writer] = False

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, out: bool) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if out and SUBSCRIBE in data:
                        self._sessions[writer] = True
                    dst.write(data)
                    await dst.drain()
            dst.close()

        up = asyncio.ensure_future(pump(reader, up_writer, True))
        down = asyncio.ensure_future(pump(up_reader, writer, False))
        # Either side ending (the proxy dropping the session closes ``writer``) ends both.
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        writer.close()
        up_writer.close()
        await asyncio.gather(up, down, return_exceptions=True)
        self._sessions.pop(writer, None)


def worker_config(
    *names: str, per_host: int, lease_seconds: int, local: bool = False
) -> WorkerHosts:
    return WorkerHosts(
        hosts=tuple(WorkerHost(n, f"198.18.0.{i + 2}") for i, n in enumerate(names)),
        max_concurrent_agents_per_host=per_host,
        lease_seconds=lease_seconds,
        local=local,
    )
