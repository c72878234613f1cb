"""A launcher's sandbox side as the daemon composes it, in a process of its own.

``python launcher_instance.py STATE WORKSPACE TEMPLATE POOL ENFORCER MODE TAG``: builds the
sandboxes with ``symphonyd.launcher.daemon.sandboxes_for`` (the instance id comes from
STATE, as in production), runs ``AgentSandboxes.start()``, opens a run's sandbox and spawns
an agent through ``AgentSandbox.spawn``. MODE ``crash``: the agent double-forks a child that
re-executes itself with an empty environment as ``sleep TAG``, then the launcher dies
without any teardown. MODE ``serve``: the agent is ``sleep TAG`` with the environment the
launcher gives it; the launcher stays up until its stdin closes, then tears down.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.api.launcher import WorkflowSnapshot
from symphonyd.core.hostconfig import HostConfig, SandboxHost
from symphonyd.launcher.daemon import AuditQueue, sandboxes_for
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.workspace_requests import bind_config

AGENT_UID = 64123
# Double fork; the grandchild leaves the session and sheds its environment (no
# SYMPHONY_SANDBOX_ID, nothing), as an agent dodging crash cleanup would. The agent itself
# stays, so the unit (systemd path) stays up.
ESCAPER = (
    "import os, sys\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        os.execve('/bin/sleep', ['sleep', sys.argv[1]], {})\n"
    "    os._exit(0)\n"
    "os.wait()\n"
    "os.execv('/bin/sleep', ['sleep', '1000'])\n"
)


class PrintedAudit(AuditQueue):
    """The launcher's audit queue, printing each record instead of sending it."""

    def put(self, record: AuditEventIn) -> None:
        print("AUDIT", record.type, record.payload, flush=True)


async def main(argv: list[str]) -> None:
    state, workspace, template, pool, enforcer, mode, tag = argv
    host = HostConfig(
        state_dir=state,
        runtime_dir=f"{state}/run",
        audit_dir=f"{state}/audit",
        sandbox=SandboxHost(
            upstream_dns=("198.18.1.53",), address_pool=pool, require_resource_limits=False
        ),
    )
    sandboxes = sandboxes_for(
        host, RunAs(AGENT_UID, AGENT_UID), Path(template), PrintedAudit(f"{state}/none.sock")
    )
    assert sandboxes is not None
    sandboxes.use_systemd = enforcer == "systemd"
    await sandboxes.start()
    ws = Path(workspace)
    config = {"tracker": {"kind": "memory"}, "workspace": {"root": str(ws.parent)}}
    snapshot = WorkflowSnapshot(f"{state}/WORKFLOW.md", config, "x", "0" * 64)
    sandbox = await sandboxes.open(f"run-{tag.replace('.', '-')}", ws, bind_config(snapshot, {}))
    if mode == "crash":
        argv_agent = ["/usr/bin/python3", "-c", ESCAPER, tag]
    else:
        argv_agent = ["/bin/sleep", tag]
    proc = await sandbox.spawn(argv_agent, ws, {})
    print("READY", sandbox.handle.lease.host_ifname, sandboxes.manager.instance, flush=True)
    if mode == "crash":
        await asyncio.sleep(1)  # let the grandchild shed its environment
        os._exit(9)  # a crash: no teardown of any kind
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await sandbox.close()
    await proc.wait()
    await sandboxes.close()
    print("CLOSED", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
