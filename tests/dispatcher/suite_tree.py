"""The four daemons as their own processes on a local-files board, as in development.

``python -m symphonyd.<daemon>`` for audit, tracker, launcher and dispatcher, with a host
config and self-bound sockets in a short temporary runtime directory and the sandbox off
(``[sandbox] enabled = false``). The agent is ``bench/data/stamped_zero_work.sh``: it notes
when it started in its workspace (``.agent_started``), completes one turn and hands its issue
off to ``Human Review``. Used by tests/dispatcher/test_change_events.py,
tests/tracker/test_change_events.py, bench/event_latency.py and bench/pipeline_throughput.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from symphonyd.core.api.dispatcher import (
    DISPATCHER_PAUSE,
    DISPATCHER_RESUME,
    DISPATCHER_SNAPSHOT,
    PauseParams,
    StateSnapshot,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.wire import MethodSpec
from symphonyd.runtime.ipc_client import IpcClient
from symphonyd.tracker.local_store import render

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "bench" / "data" / "stamped_zero_work.sh"
DAEMONS = ("audit", "tracker", "launcher", "dispatcher")
# The socket each daemon binds last: once it exists the daemon serves.
READY_SOCKET = {"audit": "audit-launcher", "tracker": "tracker-launcher",
                "launcher": "launcher-dispatcher", "dispatcher": "dispatcher-ctl"}  # fmt: skip
WORKFLOW = """---
tracker:
  kind: local
  provider:
    directory: {issues}
    tool_states: [Human Review]
  active_states: [Todo]
  terminal_states: [Done]
polling:
  interval_ms: {poll_ms}
workspace:
  root: {root}/ignored
agent:
  max_concurrent_agents: {concurrency}
  max_turns: {max_turns}
codex:
  command: exec {agent}
  approval_policy: never
---
Work on {{{{ issue.identifier }}}}. Hand it off when done.
"""


class SuiteTree:
    """One tree (issues, workspaces, audit, state) and its four daemon processes."""

    def __init__(
        self,
        base: Path,
        *,
        poll_ms: int,
        concurrency: int = 10,
        agent: Path = AGENT,
        max_turns: int = 1,
        log_level: str = "info",
    ) -> None:
        self.base = base
        # AF_UNIX paths are limited to 108 bytes: the runtime dir is short, under /tmp.
        self.run = Path(tempfile.mkdtemp(prefix="sytree"))
        self.issues, self.ws, self.audit = base / "issues", base / "ws", base / "audit"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # More arguments per daemon (tests/webhook: the tracker's hint socket).
        self.extra_args: dict[str, list[str]] = {}
        self.env: dict[str, str] = {}
        for d in (self.issues, self.ws, self.audit, base / "agent" / ".codex"):
            d.mkdir(parents=True)
        (base / "WORKFLOW.md").write_text(
            WORKFLOW.format(
                issues=self.issues,
                poll_ms=poll_ms,
                root=base,
                concurrency=concurrency,
                agent=agent,
                max_turns=max_turns,
            )
        )
        (base / "symphonyd.toml").write_text(
            f'workflow = "{base / "WORKFLOW.md"}"\nlog_level = "{log_level}"\n'
            f'[paths]\nstate_dir = "{base}"\nruntime_dir = "{self.run}"\n'
            f'audit_dir = "{self.audit}"\nworkspace_root = "{self.ws}"\n'
            "[sandbox]\nenabled = false\n"
        )

    # ------------------------------------------------------------------ processes

    def start(self, daemons: tuple[str, ...] = DAEMONS) -> None:
        uid, host, run = str(os.getuid()), str(self.base / "symphonyd.toml"), self.run
        argv = {
            "audit": ["--dir", str(self.audit), "--allow-uid", uid]
            + [a for n in ("dispatcher", "launcher", "tracker")
               for a in ("--listen", f"{n}={run / f'audit-{n}.sock'}")],
            "tracker": ["--host-config", host, "--dispatcher-uid", uid, "--launcher-uid", uid,
                        "--dispatcher-socket", str(run / "tracker-dispatcher.sock"),
                        "--launcher-socket", str(run / "tracker-launcher.sock")],
            "launcher": ["--host-config", host, "--dispatcher-uid", uid,
                         "--socket", str(run / "launcher-dispatcher.sock"),
                         "--agent-home", str(self.base / "agent")],
            "dispatcher": ["--host-config", host, "--ctl-socket", str(run / "dispatcher-ctl.sock")],
        }  # fmt: skip
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        env.pop("NOTIFY_SOCKET", None)
        for name in daemons:
            with (self.base / f"{name}.log").open("ab") as log:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", f"symphonyd.{name}", *argv[name],
                     *self.extra_args.get(name, [])],
                    env=env, stdout=log, stderr=log, cwd=self.base,
                )  # fmt: skip
            self.wait(f"{name} to serve", lambda n=name: self._serving(n))

    def _serving(self, name: str) -> bool:
        if self.procs[name].poll() is not None:
            raise AssertionError(f"{name} exited: {self.log(name)}")
        return (self.run / f"{READY_SOCKET[name]}.sock").exists()

    def log(self, name: str) -> str:
        return (self.base / f"{name}.log").read_text(errors="replace")

    def stop_daemon(self, name: str) -> int:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            return proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{name} did not stop on SIGTERM: {self.log(name)}") from None

    def stop(self) -> dict[str, int]:
        codes = {}
        for name in reversed(DAEMONS):
            if name in self.procs:
                codes[name] = self.stop_daemon(name)
        shutil.rmtree(self.run, ignore_errors=True)
        return codes

    # ------------------------------------------------------------------ board and agents

    def write_issue(self, ident: str, state: str = "Todo", *, rename: bool = False) -> None:
        """Write (or rewrite) one issue file; ``rename``: as an editor saves, via a temporary
        file renamed into place."""
        meta = {"id": ident, "identifier": ident, "title": f"issue {ident}", "state": state,
                "priority": 2, "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
        path = self.issues / f"{ident}.md"
        if rename:
            tmp = self.issues / f".{ident}.md.swp"
            tmp.write_bytes(render(meta, "Nothing to do."))
            tmp.rename(path)
        else:
            path.write_bytes(render(meta, "Nothing to do."))

    def agent_started_ns(self, ident: str) -> int | None:
        try:
            return int((self.ws / ident / ".agent_started").read_text())
        except (FileNotFoundError, ValueError):
            return None

    # ------------------------------------------------------------------ dispatcher

    def call(self, spec: MethodSpec[Any, Any], params: Any) -> Any:
        async def go() -> Any:
            client = await IpcClient.connect(self.run / "dispatcher-ctl.sock")
            try:
                return await client.call(spec, params)
            finally:
                await client.close()

        return asyncio.run(go())

    def snapshot(self) -> StateSnapshot:
        snap: StateSnapshot = self.call(DISPATCHER_SNAPSHOT, Empty())
        return snap

    def tracker_checked_at(self) -> str | None:
        """When the dispatcher last fetched from the tracker: changes with every tick."""
        rows = [d for d in self.snapshot().daemons if d.daemon == "tracker"]
        return rows[0].checked_at if rows else None

    def pause(self) -> None:
        self.call(DISPATCHER_PAUSE, PauseParams("test"))

    def resume(self) -> None:
        self.call(DISPATCHER_RESUME, Empty())

    def doctor(self, name: str) -> dict[str, str]:
        """``symphonyctl doctor --json``'s check ``name`` for this tree's host config."""
        out = subprocess.run(
            [sys.executable, "-m", "symphonyd.ctl", "doctor", "--json",
             "--host-config", str(self.base / "symphonyd.toml")],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        (check,) = [c for c in json.loads(out.stdout) if c["name"] == name]
        return dict(check)

    def wait(self, what: str, check: Any, timeout: float = 60.0) -> None:
        """Poll ``check()`` until true; the timeout only prevents a hang."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)
