"""Workspace hooks run through the real HookRunner inside a sandbox with their own policy."""

from __future__ import annotations

import json

import pytest

from symphonyd.launcher.hooks import HookRunner
from symphonyd.launcher.sandbox.bwrap import hook_wrapper
from tests.sandbox.conftest import AGENT_UID, Launcher, World, agent_policy

pytestmark = pytest.mark.root


def test_hook_runs_unprivileged_with_the_agent_view_and_its_own_egress(
    launcher: Launcher, world: World
):
    # Hooks' policy: the git host only (here allowed.test), not the agent's list.
    handle = launcher.setup("hook-a", agent_policy(allowed_domains=["allowed.test"]))
    try:
        runner = HookRunner(command_wrapper=hook_wrapper(handle, world.view()), home="/tmp")
        probe = f"python3 {world.workspace / 'probe.py'}"
        script = "; ".join(
            [
                f"{probe} identity",
                f"{probe} fetch https://allowed.test/ {world.ca}",
                f"{probe} fetch http://denied.test/ {world.ca}",
                f"{probe} read {world.etc_symphony / 'symtest-secret'}",
                f"{probe} write {world.workspace / '.git' / 'hooks' / 'x'}",
            ]
        )
        result = launcher.loop.run(
            runner.run("after_create", script, world.workspace, timeout_ms=60_000, identifier="T-1")
        )
        assert result.ok, result.output_tail
        lines = [
            json.loads(x) for x in result.output_tail.strip().splitlines() if x.startswith("{")
        ]
        identity, allowed, denied, secret, hooks_write = lines
        assert identity["uid"] == AGENT_UID
        assert identity["env"]["HTTPS_PROXY"] == handle.proxy_url
        assert identity["env"]["ISSUE_IDENTIFIER"] == "T-1"
        assert not any("LINEAR" in k for k in identity["env"])
        assert allowed["ok"], allowed
        assert (denied["ok"], denied["status"]) == (False, 403)
        assert not secret["ok"]
        assert not hooks_write["ok"]
    finally:
        launcher.teardown(handle)
