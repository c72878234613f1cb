"""Workspace hooks run by the launcher itself, each in a sandbox of its own (bubblewrap path).

The hooks write what they saw into the workspace (the one place they may write); the test
reads it back as root. No agent CLI is needed: the agent command fails at once, which is
enough to run after_create, before_run and after_run through the launcher.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.launcher import StartRun, WorkflowSnapshot
from symphonyd.core.hostconfig import SandboxHost
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.sandbox.addresses import AddressPool
from symphonyd.launcher.sandbox.agent_sandbox import AgentSandboxes
from symphonyd.launcher.sandbox.dns import UpstreamResolver
from symphonyd.launcher.sandbox.manager import SandboxManager, audit_event
from symphonyd.launcher.service import LauncherDeps, LauncherService
from symphonyd.runtime.logging import context_fields
from tests.demo.test_model_server import MoveTracker
from tests.launcher.test_service import issue, wait_finished

pytestmark = pytest.mark.root
NOBODY = RunAs(65534, 65534)
# Everything a hook can tell about its world, written where the test can read it.
REPORT = (
    'out="$PWD/seen-$1"; id -u > "$out.uid"; env > "$out.env"; '
    'cat "$SECRET" > "$out.secret" 2>&1 || echo denied >> "$out.secret"; '
    '(echo x > .git/hooks/planted) 2> "$out.githooks" || echo denied >> "$out.githooks"; '
    'echo "${ISSUE_TITLE}" > "$out.title"'
)


def hook(name: str, secret: Path) -> str:
    return f"set -- {name}; SECRET={secret}; mkdir -p .git/hooks; {REPORT}"


def run_once(
    tmp_path: Path,
    template: Path,
    pool: AddressPool | None = None,
    hooks: dict[str, str] | None = None,
    agent_command: str = "/bin/false",
) -> tuple[LauncherService, list[AuditEventIn], list[str]]:
    os.chmod(tmp_path, 0o755)
    state = tmp_path / "secret-state"
    state.mkdir()
    (state / "token").write_text("tracker-token-value")
    os.chmod(state / "token", 0o644)
    audit: list[AuditEventIn] = []
    manager = SandboxManager(
        upstream=UpstreamResolver([("127.0.0.1", 9)], timeout=0.5),
        audit=lambda record: audit.append(audit_event(record)),
        pool=pool,
    )
    sandboxes = AgentSandboxes(
        manager,
        SandboxHost(),
        run_as=NOBODY,
        template_home=template,
        hidden=[state],
        use_systemd=False,
    )
    deps = LauncherDeps(
        tracker=MoveTracker(issue()),
        audit=audit.append,
        agent_home=template,
        run_as=NOBODY,
        sandboxes=sandboxes,
        env={"LINEAR_API_KEY": "tracker-token-value"},
    )
    service = LauncherService(deps)
    config: dict[str, Any] = {
        "tracker": {"kind": "memory"},
        "workspace": {"root": str(tmp_path / "ws")},
        "codex": {"command": agent_command},
        "hooks": hooks
        or {
            "after_create": hook("after_create", state / "token"),
            "before_run": hook("before_run", state / "token"),
            "after_run": hook("after_run", state / "token"),
        },
    }
    snapshot = WorkflowSnapshot(str(tmp_path / "WORKFLOW.md"), config, "Do it", "0" * 64)
    table_before = manager.firewall.table_exists()
    live_after: list[str] = []

    async def scenario() -> None:
        await sandboxes.start()
        try:
            started = await service.start_run(StartRun("r1", issue(), None, snapshot))
            assert started.accepted
            await wait_finished(service, "r1", timeout=60)
            live_after.extend(manager.live)
        finally:
            await service.shutdown()
            if table_before:
                await manager.close()
            else:
                await sandboxes.close()

    asyncio.run(scenario())
    return service, audit, live_after


def test_each_hook_runs_sandboxed_unprivileged_and_without_secrets(
    tmp_path: Path, template: Path
) -> None:
    service, audit, live_after = run_once(tmp_path, template)
    ws = tmp_path / "ws" / "ABC-1"
    for name in ("after_create", "before_run", "after_run"):
        assert (ws / f"seen-{name}.uid").read_text().strip() == str(NOBODY.uid), name
        env = dict(
            line.split("=", 1) for line in (ws / f"seen-{name}.env").read_text().splitlines()
        )
        assert env["HTTPS_PROXY"].startswith("http://100.64."), env  # its own proxy
        assert "LINEAR_API_KEY" not in env and "tracker-token-value" not in str(env)
        assert "denied" in (ws / f"seen-{name}.secret").read_text(), name
        # Issue text arrives verbatim through ISSUE_* only.
        assert (ws / f"seen-{name}.title").read_text().strip() == "Fix it"
    # .git/hooks did not exist when after_create's sandbox was built, so that hook could
    # create it; from then on it exists and is read-only for later hooks.
    assert "denied" in (ws / "seen-before_run.githooks").read_text()
    assert "denied" in (ws / "seen-after_run.githooks").read_text()
    proxies = {
        dict(x.split("=", 1) for x in (ws / f"seen-{n}.env").read_text().splitlines())[
            "HTTPS_PROXY"
        ]
        for n in ("after_create", "before_run", "after_run")
    }
    ready = [a for a in audit if a.type == "sandbox_ready"]
    teardown = [a for a in audit if a.type == "sandbox_teardown"]
    # Three hooks plus the agent's own sandbox, each built and torn down.
    assert len(ready) == 4 and len(teardown) == 4, [a.type for a in audit]
    assert len(proxies) >= 1 and not live_after
    (info,) = service.list_runs().runs
    assert info.outcome is not None and info.outcome.status == "failed"  # /bin/false agent


def test_hook_sandbox_failure_means_hook_and_agent_never_run(
    tmp_path: Path, template: Path
) -> None:
    pool = AddressPool("100.127.9.0/30")  # one lease, taken below: setup must fail
    pool.allocate("squatter")
    service, audit, _ = run_once(tmp_path, template, pool)
    ws = tmp_path / "ws" / "ABC-1"
    assert not list(ws.glob("seen-*")), list(ws.iterdir())
    (info,) = service.list_runs().runs
    assert info.outcome is not None and info.outcome.status == "failed"
    assert info.outcome.error_code in {"hook_failed", "workspace_failed"}, info.outcome
    assert "sandbox" in (info.outcome.error or ""), info.outcome
    assert any(a.type == "sandbox_failure" for a in audit), [a.type for a in audit]
    assert not any(a.type == "sandbox_ready" for a in audit)


def test_a_runs_refused_names_reach_its_issue_log_with_the_line_to_add(
    tmp_path: Path, template: Path
) -> None:
    """What ``symphonyctl logs ABC-1`` shows: the launcher's lines bound to the run's issue
    (the journal's ISSUE_IDENTIFIER field), here read from the same log records."""
    seen: list[tuple[str, dict[str, Any]]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # Handlers run in the logging call's context, as the journal handler does.
            seen.append((record.getMessage(), {**context_fields(record)}))

    lookup = "python3 -c \"import socket; socket.getaddrinfo('{}', 443, socket.AF_INET)\" || true"
    script = "; ".join(lookup.format(n) for n in ("pkg.example", "pkg.example", "cdn.example"))
    handler = Capture(logging.INFO)
    logger = logging.getLogger("symphonyd.launcher")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        _, audit, _ = run_once(tmp_path, template, agent_command=f"{script}; exit 1")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    mine = [(m, ctx) for m, ctx in seen if "event=egress_deni" in m]
    assert mine, [m for m, _ in seen]
    assert all(ctx.get("issue_identifier") == "ABC-1" for _, ctx in mine), mine
    hints = [m for m, _ in mine if "event=egress_denied " in m]
    assert any("allowed_domains: [pkg.example]" in m for m in hints), hints
    (summary,) = [m for m, _ in mine if "event=egress_denials " in m]
    assert "pkg.example x2 (not_allowlisted)" in summary, summary
    assert "cdn.example x1 (not_allowlisted)" in summary, summary
    assert "allowed_domains: [cdn.example, pkg.example]" in summary, summary
    # The same counts in the agent sandbox's teardown record: the dashboard's issue view.
    (teardown,) = [a for a in audit if a.type == "sandbox_teardown" and "denied" in a.payload]
    assert teardown.issue_identifier == "ABC-1"
    assert teardown.payload["suggest"] == "allowed_domains: [cdn.example, pkg.example]"
    assert {"host": "pkg.example", "reason": "not_allowlisted", "count": 2} in teardown.payload[
        "denied"
    ]
