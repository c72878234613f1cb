"""``python -m symphonyd.launcher``: the symphony-launcher service entry point.

Under systemd the dispatcher's socket comes from socket activation (FileDescriptorName
``dispatcher``); for development pass ``--socket PATH`` and the daemon binds it (mode 0600).
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Sequence
from pathlib import Path

from symphonyd.core.errors import SymphonyError
from symphonyd.core.hostconfig import HostConfig
from symphonyd.launcher.child_watch import use_pidfd_child_watcher
from symphonyd.launcher.daemon import AuditQueue, TrackerClient, launcher_server
from symphonyd.launcher.hooks import RunAs
from symphonyd.launcher.limits import raise_nofile_limit
from symphonyd.launcher.sandbox.addresses import AddressPool
from symphonyd.launcher.sandbox.dns import UpstreamResolver, system_upstreams
from symphonyd.launcher.sandbox.instance import load_or_create
from symphonyd.launcher.sandbox.sandbox import SandboxManager, audit_event
from symphonyd.launcher.sandboxing import AgentSandboxes
from symphonyd.launcher.service import LauncherDeps, LauncherService
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.daemon import Daemon, run_daemon
from symphonyd.runtime.hostconfig_file import load_host_config

DISPATCHER_USER = "symphony-dispatch"
AGENT_USER = "symphony-agent"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="symphony-launcher", description=__doc__)
    p.add_argument("--host-config", help="host config file (default /etc/symphony/symphonyd.toml)")
    p.add_argument("--socket", help="bind this path instead of socket activation")
    p.add_argument("--tracker-socket", help="default <runtime_dir>/tracker-launcher.sock")
    p.add_argument("--audit-socket", help="default <runtime_dir>/audit-launcher.sock")
    p.add_argument("--agent-home", help="HOME of the agents (default <state_dir>/agent)")
    p.add_argument(
        "--dispatcher-uid",
        type=int,
        action="append",
        help=f"uid allowed to connect (default: {DISPATCHER_USER})",
    )
    return p.parse_args(argv)


def agent_identity() -> RunAs | None:
    """Agents and hooks run as symphony-agent when the launcher is root and the user exists."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(AGENT_USER)
    except KeyError:
        return None
    return RunAs(entry.pw_uid, entry.pw_gid)


def sandboxes_for(
    host: HostConfig, run_as: RunAs | None, agent_home: Path, audit: AuditQueue
) -> AgentSandboxes | None:
    """The kernel sandbox, or None when the host config turns it off; never half of one."""
    if not host.sandbox.enabled:
        return None
    if run_as is None:
        raise SymphonyError(
            f"the agent sandbox needs root and the {AGENT_USER} user; set [sandbox] "
            "enabled = false in the host config only where agents may run unconfined",
            code="invalid_config",
        )
    upstream = [(s, 53) for s in host.sandbox.upstream_dns] or system_upstreams()
    state = Path(host.state_dir)
    manager = SandboxManager(
        upstream=UpstreamResolver(upstream),
        audit=lambda record: audit.put(audit_event(record)),
        pool=AddressPool(host.sandbox.address_pool),
        # Persisted: a restarted launcher finds its crashed predecessor's agents by it, and
        # another symphonyd on this host (its own state directory) has another.
        instance=load_or_create(state / "launcher"),
    )
    # Everything of symphonyd an agent must not see; the shipped deny list adds the host's
    # credential stores (policy/fs-deny.txt).
    hidden = [
        Path(host.audit_dir),
        Path(host.runtime_dir),
        Path("/etc/symphony"),
        *(state / name for name in ("dispatcher", "tracker", "issues", "launcher")),
    ]
    return AgentSandboxes(
        manager, host.sandbox, run_as=run_as, template_home=agent_home, hidden=hidden
    )


def build(
    args: argparse.Namespace, host: HostConfig
) -> tuple[LauncherService, AuditQueue, TrackerClient]:
    runtime = Path(host.runtime_dir)
    audit = AuditQueue(args.audit_socket or runtime / "audit-launcher.sock")
    tracker = TrackerClient(args.tracker_socket or runtime / "tracker-launcher.sock")
    agent_home = Path(args.agent_home or Path(host.state_dir) / "agent")
    agent_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    run_as = agent_identity()
    if run_as is not None:
        os.chown(agent_home, run_as.uid, run_as.gid)
    deps = LauncherDeps(
        tracker=tracker,
        audit=audit.put,
        agent_home=agent_home,
        env=dict(os.environ),
        run_as=run_as,
        host=host,
        sandboxes=sandboxes_for(host, run_as, agent_home, audit),
    )
    return LauncherService(deps), audit, tracker


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        host = load_host_config(args.host_config).config
    except SymphonyError as exc:
        print(f"symphony-launcher: {exc}", file=sys.stderr)
        return 78
    raise_nofile_limit()

    async def startup(daemon: Daemon) -> None:
        use_pidfd_child_watcher()
        service, audit, tracker = build(args, host)
        uids = args.dispatcher_uid or [pwd.getpwnam(DISPATCHER_USER).pw_uid]
        server = launcher_server(service, uids)
        if args.socket:
            await server.start_path(args.socket)
        else:
            socks = listen_fds().get("dispatcher", [])
            if len(socks) != 1:
                raise SymphonyError(
                    "expected one activated socket named 'dispatcher' (or pass --socket)",
                    code="socket_setup_failed",
                )
            await server.start(socks[0])
        daemon.spawn(audit.run(), "audit-delivery")
        if service.deps.sandboxes is not None:
            await service.deps.sandboxes.start()

        async def stop() -> None:
            await server.close()
            await service.shutdown()
            if service.deps.sandboxes is not None:
                await service.deps.sandboxes.close()
            await audit.drain(10.0)
            await audit.close()
            await tracker.close()

        daemon.on_shutdown("launcher", stop)

    return run_daemon("launcher", startup, stop_timeout=60.0)


if __name__ == "__main__":
    sys.exit(main())
