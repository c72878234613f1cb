"""A whole run through the launcher inside the kernel sandbox (bubblewrap path, as root).

Real codex, real sandbox (netns, nftables, resolver, proxy, bubblewrap, unprivileged uid);
the model API is the demo endpoint on loopback, reachable only because the host config names
it as a local service. The agent writes its workspace and hands off through the tracker tool;
afterwards nothing of the sandbox is left.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path

import pytest

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.launcher import StartRun
from symphonyd.core.hostconfig import SandboxHost
from symphonyd.demo.model_server import DEMO_FILE, DemoServer
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.sandbox.agent_sandbox import AgentSandboxes
from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.manager import SandboxManager, audit_event
from symphonyd.launcher.service import LauncherDeps, LauncherService
from tests.conftest import agent_binary
from tests.demo.test_model_server import MoveTracker
from tests.launcher.test_service import issue, wait_finished

pytestmark = [pytest.mark.root, pytest.mark.agents]
NOBODY = RunAs(65534, 65534)


def nft_tables() -> str:
    return subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=False
    ).stdout


def test_sandboxed_run_edits_workspace_and_hands_off(tmp_path: Path, template: Path) -> None:
    codex = agent_binary("codex")
    assert codex is not None
    os.chmod(tmp_path, 0o755)  # the agent user must traverse to its workspace and template
    server = DemoServer(0, "Human Review")
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (template / ".codex").mkdir(parents=True)
    (template / ".codex" / "config.toml").write_text(
        'model = "demo"\nmodel_provider = "demo"\n[model_providers.demo]\nname = "demo"\n'
        f'base_url = "http://model.local:{port}/v1"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 0\nsupports_websockets = false\n"
    )
    subprocess.run(["chmod", "-R", "a+rX", str(template)], check=True)
    audit: list[AuditEventIn] = []
    manager = SandboxManager(
        upstream=UpstreamResolver([("127.0.0.1", 9)], timeout=0.5),
        audit=lambda record: audit.append(audit_event(record)),
    )
    sandboxes = AgentSandboxes(
        manager,
        SandboxHost(local_services=(f"model.local:{port}",)),
        run_as=NOBODY,
        template_home=template,
        hidden=[tmp_path / "secret-state"],
        use_systemd=False,
    )
    (tmp_path / "secret-state").mkdir()
    tracker = MoveTracker(issue())
    deps = LauncherDeps(
        tracker=tracker, audit=audit.append, agent_home=template, run_as=NOBODY, sandboxes=sandboxes
    )
    service = LauncherService(deps)
    workflow_config = {
        "tracker": {"kind": "memory"},
        "workspace": {"root": str(tmp_path / "ws")},
        "codex": {"command": f"{codex} --disable plugins app-server"},
        "agent": {"max_turns": 2},
        # The operator allows nothing; the local service is host configuration.
        "sandbox": {"egress": {"mode": "allowlist", "allowed_domains": []}},
    }
    from symphonyd.core.api.launcher import WorkflowSnapshot

    snapshot = WorkflowSnapshot(
        str(tmp_path / "WORKFLOW.md"), workflow_config, "Do {{ issue.identifier }}", "0" * 64
    )

    # The session's other sandbox tests may own the one `inet symphonyd` table already.
    table_before = manager.firewall.table_exists()

    async def scenario() -> None:
        await sandboxes.start()
        try:
            started = await service.start_run(StartRun("r1", issue(), None, snapshot))
            assert started.accepted
            await wait_finished(service, "r1", timeout=120)
        finally:
            await service.shutdown()
            if table_before:
                await manager.close()
            else:
                await sandboxes.close()  # what a stopping launcher does: no rules left
                assert not manager.firewall.table_exists()

    try:
        asyncio.run(scenario())
    finally:
        server.shutdown()
        server.server_close()
    (info,) = service.list_runs().runs
    assert info.outcome is not None and info.outcome.status == "succeeded", (info.outcome, audit)
    written = tmp_path / "ws" / "ABC-1" / DEMO_FILE
    assert "demo model" in written.read_text()
    assert written.stat().st_uid == NOBODY.uid  # written by the agent user, not root
    assert tracker.issues["i-1"].state == "Human Review"
    types = [a.type for a in audit]
    assert "sandbox_ready" in types and "sandbox_teardown" in types, types
    allows = [a for a in audit if a.type == "egress_allow"]
    assert allows and all(a.payload.get("rule") == "local_service" for a in allows), allows
    # The sandbox's records name the run's issue, so filtering the audit log by issue finds
    # them (the dashboard's issue page and `/audit?issue=`).
    sandbox = [a for a in audit if a.type.startswith(("sandbox_", "egress_"))]
    assert sandbox and {(a.issue_id, a.issue_identifier) for a in sandbox} == {("i-1", "ABC-1")}
    assert all("issue_id" not in a.payload for a in sandbox)
    assert not manager.live
