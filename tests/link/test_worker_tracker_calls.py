"""A worker's agent changes its own issue on the control host's tracker, and nothing else.

Every piece is the production one, each as its own process: on the control host the
tracker daemon on a local-files board (with its link socket), the audit writer, the
dispatcher (host config ``[worker]``, no local launcher, its link socket) and the link
daemon; the real ``ssh`` client and a test-owned ``sshd`` whose key is
``restrict,port-forwarding,command=<bridge>``; on the worker the launcher daemon whose
tracker client is pointed at the socket sshd forwards back (``--tracker-socket``). The
agent is the zero-work app-server (bench/data/stamped_zero_work.sh): one turn, then
``tracker_move`` to Human Review through the launcher's tool path; a second test runs the
real ``codex app-server`` there instead, against a mock model API.

Then the test plays a compromised worker: it connects to that same forwarded socket and
sends calls the dispatcher never bound to this worker.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.dispatcher import DISPATCHER_SNAPSHOT
from symphonyd.core.api.shared import Empty
from symphonyd.core.api.tracker import (
    TRACKER_FETCH_BY_IDS,
    TRACKER_FETCH_BY_STATES,
    TRACKER_SUBSCRIBE,
    TRACKER_TOOL_CALL,
    TRACKER_TOOL_SPECS,
    FetchByIds,
    FetchByStates,
    ToolCall,
)
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import build_issue
from symphonyd.core.wire import MethodSpec
from symphonyd.runtime.ipc_client import IpcClient
from tests.dispatcher.suite_tree import AGENT, SuiteTree
from tests.launcher.agents.conftest import codex_command
from tests.launcher.agents.mock_models import MockServer, Reply, responses_call, responses_text
from tests.launcher.test_daemon_sockets import (
    codex_against,
    launcher_layout,
    spawn,
    stop,
    wait_for_socket,
)
from tests.link.conftest import Worker
from tests.link.test_link_daemon import host_config

pytestmark = pytest.mark.root


@contextmanager
def control_tree(worker: Worker, base: Path) -> Iterator[SuiteTree]:
    """The control host's daemons (no local launcher) with the worker in the host config."""
    tree = SuiteTree(base, poll_ms=300)
    config = tree.base / "symphonyd.toml"
    config.write_text(
        config.read_text()
        + f'[worker]\nssh_user = "root"\nknown_hosts = "{worker.known_hosts}"\nlocal = false\n'
        f'[[worker.hosts]]\nname = "w1"\naddress = "127.0.0.1"\nport = {worker.port}\n'
    )
    uid = str(os.getuid())
    tree.extra_args = {
        "tracker": ["--link-socket", str(tree.run / "tracker-link.sock"), "--link-uid", uid],
        "dispatcher": ["--link-socket", str(tree.run / "dispatcher-link.sock"), "--link-uid", uid],
    }
    try:
        yield tree
    finally:
        tree.stop()


@pytest.fixture
def control(worker: Worker, tmp_path: Path) -> Iterator[SuiteTree]:
    with control_tree(worker, tmp_path / "control") as tree:
        yield tree


@dataclass
class WorkerSide:
    upstream: Path  # the socket sshd forwards back: the worker launcher's --tracker-socket
    workspaces: Path
    agent_home: Path
    logs: dict[str, str] = field(default_factory=dict)  # after exit: link, launcher


@contextmanager
def worker_side(
    worker: Worker,
    control: SuiteTree,
    tmp_path: Path,
    agent_setup: Callable[[Path], None] | None = None,
) -> Iterator[WorkerSide]:
    """The worker launcher and the link; the control host's audit writer and tracker, the
    forward up, then the dispatcher. Exit stops the link and the launcher (both must exit 0)."""
    # The worker: sshd listens for the tracker forward in a directory of the login user's.
    upstream = worker.runtime / "link" / "tracker.sock"
    upstream.parent.mkdir(mode=0o700)
    (tmp_path / "launcher").mkdir()
    _, _, ws_root, agent_home, host_config = launcher_layout(tmp_path / "launcher")
    side = WorkerSide(upstream, ws_root, agent_home)
    if agent_setup is not None:
        agent_setup(agent_home)  # before anything can be dispatched
    launcher = spawn(
        "symphonyd.launcher",
        *("--host-config", str(host_config), "--agent-home", str(agent_home)),
        *("--socket", str(worker.runtime / "launcher-link.sock"), "--dispatcher-uid", "0"),
        *("--tracker-socket", str(upstream)),
    )
    link: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(wait_for_socket(worker.runtime / "launcher-link.sock", launcher))
        control.start(("audit", "tracker"))
        link = spawn(
            "symphonyd.link",
            *("--host-config", str(control.base / "symphonyd.toml"), "--key", str(worker.key)),
            *("--dispatcher-uid", "0", "--worker-tracker-socket", str(upstream)),
        )
        # sshd created the forwarded socket as the login user, 0600 (StreamLocalBindMask).
        control.wait("the tracker forward on the worker", upstream.exists)
        assert upstream.stat().st_mode & 0o777 == 0o600
        assert (control.run / "link" / "tracker-w1.sock").stat().st_mode & 0o777 == 0o600
        control.start(("dispatcher",))
        yield side
    finally:
        link_code, side.logs["link"] = stop(link) if link is not None else (0, "")
        code, side.logs["launcher"] = stop(launcher)
    assert code == 0, side.logs["launcher"]
    assert link_code == 0, side.logs["link"]


def relayed(side: WorkerSide) -> list[str]:
    return [line for line in side.logs["link"].splitlines() if "outcome=relayed" in line]


def issue_state(tree: SuiteTree, ident: str) -> str:
    for line in (tree.issues / f"{ident}.md").read_text().splitlines():
        if line.startswith("state:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    raise AssertionError(f"{ident} has no state line")


async def _refusal(path: Path, spec: MethodSpec[Any, Any], params: Any) -> str:
    async with await IpcClient.connect(path) as client:
        with pytest.raises(SymphonyError) as caught:
            await client.call(spec, params, timeout=60)
    return caught.value.error_code


def refusal(path: Path, spec: MethodSpec[Any, Any], params: Any) -> str:
    return asyncio.run(_refusal(path, spec, params))


def move(ident: str) -> ToolCall:
    """What a compromised worker would send: the move tool on an issue of its choosing."""
    issue = build_issue(
        id=ident, identifier=ident, title=f"issue {ident}", state="Todo", dispatchable=True
    )
    return ToolCall(issue, "tracker_move", {"state": "Human Review"})


def test_a_workers_agent_moves_its_own_issue_and_nothing_else(
    worker: Worker, control: SuiteTree, tmp_path: Path
) -> None:
    control.write_issue("MT-1")
    control.write_issue("MT-2", state="Backlog")  # never dispatched: bound to nobody
    with worker_side(worker, control, tmp_path) as side:
        upstream = side.upstream
        # The run goes to w1; its agent hands MT-1 off through the tracker tool.
        control.wait("MT-1 handed off", lambda: issue_state(control, "MT-1") == "Human Review")
        assert (side.workspaces / "MT-1" / ".agent_started").exists()  # it ran on the worker
        control.wait("the run to finish", lambda: control.snapshot().counts.running == 0)

        # A compromised worker, on the very socket its launcher uses.
        assert refusal(upstream, TRACKER_TOOL_CALL, move("MT-2")) == "issue_not_bound"
        # MT-1's run is over: the worker's binding ended with it.
        assert refusal(upstream, TRACKER_TOOL_CALL, move("MT-1")) == "issue_not_bound"
        assert refusal(upstream, TRACKER_FETCH_BY_IDS, FetchByIds(["MT-2"])) == "issue_not_bound"
        assert (
            refusal(upstream, TRACKER_FETCH_BY_STATES, FetchByStates(["Todo", "Backlog"]))
            == "method_not_allowed"
        )
        assert refusal(upstream, TRACKER_SUBSCRIBE, Empty()) == "method_not_allowed"
        assert issue_state(control, "MT-2") == "Backlog"
        assert issue_state(control, "MT-1") == "Human Review"

        async def specs() -> list[str]:  # what every run needs still passes
            async with await IpcClient.connect(upstream) as client:
                reply = await client.call(TRACKER_TOOL_SPECS, Empty(), timeout=60)
            return [tool.name for tool in reply.tools]

        assert "tracker_move" in asyncio.run(specs())
        dispatcher_link = control.run / "dispatcher-link.sock"
        assert refusal(dispatcher_link, DISPATCHER_SNAPSHOT, Empty()) == "unknown_method"
        # No dispatcher to ask: nothing passes (fail closed).
        assert control.stop_daemon("dispatcher") == 0
        assert refusal(upstream, TRACKER_TOOL_CALL, move("MT-2")) == "unavailable"
        # Behind the relay the link's own sockets serve only what the relay needs.
        tracker_link = control.run / "tracker-link.sock"
        assert refusal(tracker_link, TRACKER_FETCH_BY_STATES, FetchByStates(["Todo"])) == (
            "unknown_method"
        )
    [line] = relayed(side)
    assert "issue_identifier=MT-1" in line and "tool=tracker_move" in line, line
    assert "success=true" in line
    refused = [line for line in side.logs["link"].splitlines() if "outcome=refused" in line]
    assert len(refused) == 6, refused
    assert sum("reason=issue_not_bound" in line for line in refused) == 3
    assert "reason=dispatcher_unavailable" in refused[-1]
    assert all("host=w1" in line for line in refused)
    assert "MT-2" not in control.log("tracker")  # the refused calls never reached it


@pytest.mark.agents
def test_a_real_codex_agent_on_a_worker_hands_its_issue_off(worker: Worker, tmp_path: Path) -> None:
    """The real ``codex app-server`` on the worker (a mock model API asks for the move)."""

    def script(n: int, body: dict[str, Any]) -> Reply:
        if n == 1:
            return responses_call("tracker_move", {"state": "Human Review"})
        return responses_text("handed off")

    with MockServer(script) as model, control_tree(worker, tmp_path / "control") as control:
        workflow = control.base / "WORKFLOW.md"
        text = workflow.read_text()
        assert f"command: exec {AGENT}" in text
        workflow.write_text(text.replace(f"command: exec {AGENT}", f"command: {codex_command()}"))
        control.write_issue("MT-3")
        setup = functools.partial(codex_against, port=model.port)
        with worker_side(worker, control, tmp_path, setup) as side:
            control.wait(
                "MT-3 handed off", lambda: issue_state(control, "MT-3") == "Human Review", 120
            )
        assert len(model.requests) >= 2  # the model was asked, then told the tool's result
    [line] = relayed(side)
    assert "issue_identifier=MT-3" in line and "success=true" in line, line
    assert not (side.workspaces / "MT-3" / ".agent_started").exists()  # not the stand-in


@pytest.mark.parametrize("path", ["relative/tracker.sock", "/run/a:b/tracker.sock"])
def test_a_worker_socket_path_ssh_cannot_forward_exits_78(
    worker: Worker, tmp_path: Path, path: str
) -> None:
    config = host_config(tmp_path, worker)
    proc = spawn(
        "symphonyd.link",
        *("--host-config", str(config), "--hosts-dir", str(tmp_path / "hosts")),
        *("--key", str(worker.key), "--dispatcher-uid", "0", "--worker-tracker-socket", path),
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 78, err.decode()
    assert "forwarded socket path" in err.decode()
