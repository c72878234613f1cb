"""Setting up and tearing down one agent's network sandbox, failing closed at every step.

Order matters: the ``inet symphonyd`` table with its wildcard drop rules is loaded when the
manager starts, so an agent interface is covered by "drop everything" from the instant it
exists; each setup step then only *opens* the agent's own resolver and proxy. Any failure
raises :class:`SandboxError` with the code of the failing step, is audited as
``sandbox_failed``, and undoes what was already built. Nothing is spawned by this module; the
caller (``agent_sandbox.py``) starts the agent only with a handle in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symphonyd.core import audit_events
from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.config_extensions import ResourcesConfig
from symphonyd.launcher.sandbox import cgroups, procs
from symphonyd.launcher.sandbox import netns as netns_mod
from symphonyd.launcher.sandbox.addresses import AddressPool, Lease
from symphonyd.launcher.sandbox.answer_book import AnswerBook
from symphonyd.launcher.sandbox.audit_limit import AgentAuditLimiter
from symphonyd.launcher.sandbox.denials import DenialTally
from symphonyd.launcher.sandbox.dns import AgentResolver, UpstreamResolver
from symphonyd.launcher.sandbox.dns_cache import AgentLookup
from symphonyd.launcher.sandbox.egress_limits import EgressLimits
from symphonyd.launcher.sandbox.egress_policy import EgressPolicy
from symphonyd.launcher.sandbox.errors import SandboxError
from symphonyd.launcher.sandbox.instance import new_instance
from symphonyd.launcher.sandbox.intercept import INTERCEPT_PORT, Interceptor
from symphonyd.launcher.sandbox.nft import DirectElement, Firewall, Intercept
from symphonyd.launcher.sandbox.proxy import EgressProxy

AuditSink = Callable[[dict[str, Any]], None]


def audit_event(record: dict[str, Any]) -> AuditEventIn:
    """A sandbox record (``{"type": ..., ...}``) as the audit writer's IPC record; the
    issue fields the launcher adds for a run's sandbox become the record's issue."""
    payload = {k: v for k, v in record.items() if k not in _RECORD_FIELDS}
    issue_id, identifier = record.get("issue_id"), record.get("issue_identifier")
    return AuditEventIn(
        type=str(record["type"]),
        payload=payload,
        issue_id=issue_id if isinstance(issue_id, str) else None,
        issue_identifier=identifier if isinstance(identifier, str) else None,
    )


_RECORD_FIELDS = frozenset({"type", "issue_id", "issue_identifier"})


PROXY_PORT = 3128
# Per-sandbox files the launcher bind-mounts into the agent's view (its resolv.conf), in a
# directory per launcher instance (instance.py).
RUN_DIR = Path("/run/symphony-sandbox")


@dataclass(slots=True)
class SandboxHandle:
    agent_id: str
    lease: Lease
    netns: netns_mod.AgentNetns
    resolver: AgentResolver
    proxy: EgressProxy
    policy: EgressPolicy
    closed: bool = False
    files: list[Path] = field(default_factory=list)
    # Resource limits on the bubblewrap path (None: the systemd unit carries them).
    cgroup: cgroups.Cgroup | None = None
    # The agent's egress records go through this (first in full, repeats counted).
    audit_limiter: AgentAuditLimiter | None = None
    run_dir: Path = RUN_DIR  # this instance's directory for the files above
    # Connections that skip the proxy land here (None: interception off, or block mode).
    interceptor: Interceptor | None = None
    denials: DenialTally | None = None  # this agent's refused names, for the run's summary

    @property
    def proxy_url(self) -> str:
        return f"http://{self.lease.host_ip}:{self.proxy.port}"

    @property
    def netns_path(self) -> str:
        return self.netns.path

    def environment(self) -> dict[str, str]:
        """What the agent's environment needs so cooperative clients use the proxy."""
        url = self.proxy_url
        return {
            "HTTPS_PROXY": url,
            "HTTP_PROXY": url,
            "https_proxy": url,
            "http_proxy": url,
            "NO_PROXY": "",
            "no_proxy": "",
            procs.MARKER: self.agent_id,
        }

    def resolv_conf(self) -> str:
        return f"nameserver {self.lease.host_ip}\noptions timeout:2 attempts:1\n"


class SandboxManager:
    def __init__(
        self,
        *,
        upstream: UpstreamResolver,
        audit: AuditSink,
        pool: AddressPool | None = None,
        firewall: Firewall | None = None,
        proxy_port: int = PROXY_PORT,
        limits: EgressLimits | None = None,
        instance: str | None = None,
        intercept_port: int = INTERCEPT_PORT,
    ) -> None:
        """``instance``: the launcher's persisted id (instance.py); crash cleanup finds this
        instance's leftovers by it. Without one, a fresh id: nothing of earlier runs is
        reconciled, and nothing of anyone else's is touched."""
        self.instance = instance or new_instance()
        self.run_dir = RUN_DIR / self.instance
        self.pool = pool or AddressPool()
        self.firewall = firewall or Firewall()
        self.upstream = upstream
        self.audit = audit
        self.proxy_port = proxy_port
        self.intercept_port = intercept_port
        self.egress_limits = limits or EgressLimits()
        self.live: dict[str, SandboxHandle] = {}

    async def start(self, stopped_units: Sequence[str] = ()) -> None:
        """Reconcile after a crash: replace the table, drop stray interfaces, kill and remove
        this instance's stray cgroups (bubblewrap path) and files.

        Leftover processes are found by the cgroup the launcher put them in, never by
        anything they carry (an agent can rewrite its environment) and never host-wide (a
        second symphonyd's agents are not ours). ``stopped_units``: what the caller already
        stopped of this instance's systemd slice, for the record."""
        await asyncio.to_thread(self.firewall.reconcile)
        keep = {h.lease.host_ifname for h in self.live.values()}
        removed = [n for n in netns_mod.leftover_host_links(keep) if netns_mod.delete_host_link(n)]
        groups = await asyncio.to_thread(cgroups.reconcile, keep, self.instance)
        owned_files = {p for h in self.live.values() for p in h.files}
        if self.run_dir.is_dir():
            for path in self.run_dir.glob("symv*"):
                if path not in owned_files:
                    path.unlink(missing_ok=True)
        if removed or groups or stopped_units:
            self.audit(
                {
                    "type": audit_events.SANDBOX_RECONCILED,
                    "instance": self.instance,
                    "interfaces": removed,
                    "cgroups": groups,
                    "units": list(stopped_units),
                }
            )

    async def setup(
        self, agent_id: str, policy: EgressPolicy, resources: ResourcesConfig | None = None
    ) -> SandboxHandle:
        """Build the sandbox; with ``resources``, also its cgroup (the bubblewrap path)."""
        if agent_id in self.live:
            raise SandboxError("a sandbox for this agent already exists", code="sandbox_exists")
        lease: Lease | None = None
        ns: netns_mod.AgentNetns | None = None
        resolver: AgentResolver | None = None
        proxy: EgressProxy | None = None
        interceptor: Interceptor | None = None
        rules = False
        cg: cgroups.Cgroup | None = None
        egress = self.egress_limits
        # Per agent: its bounded audit stream, and one cache and upstream queue that its
        # resolver and proxy share (docs/design/0855, 0856).
        egress_audit = AgentAuditLimiter(
            agent_id,
            self.audit,
            interval_s=egress.audit_interval_s,
            full_records=egress.audit_full_records,
        )
        denials = DenialTally(agent_id, egress_audit)
        answers = AnswerBook()
        intercept = Intercept(self.intercept_port, policy.ports) if policy.intercepts else None
        lookup = AgentLookup(
            self.upstream,
            inflight=egress.dns_upstream_inflight,
            cache_entries=egress.dns_cache_entries,
        )
        try:
            lease = self.pool.allocate(agent_id)
            if resources is not None:
                limits = cgroups.limits_from(resources)
                hierarchy = await asyncio.to_thread(cgroups.prepare, self.instance)
                cg = await asyncio.to_thread(
                    cgroups.create, hierarchy, self.instance, lease.host_ifname, limits
                )
            ns = await asyncio.to_thread(netns_mod.create_netns, lease)
            # Open the agent's two holes only after its interface is covered by the drop rules.
            await asyncio.to_thread(self.firewall.add_agent, lease, self.proxy_port, intercept)
            rules = True
            await asyncio.to_thread(self.firewall.verify)
            resolver = AgentResolver(
                agent_id,
                str(lease.host_ip),
                policy,
                self.upstream,
                denials,
                on_answer=self._on_answer(lease, policy, answers),
                limits=egress,
                lookup=lookup,
            )
            await resolver.start()
            proxy = EgressProxy(
                agent_id,
                str(lease.host_ip),
                self.proxy_port,
                policy,
                lookup,
                denials,
                limits=egress,
            )
            await proxy.start()
            if intercept is not None:
                interceptor = Interceptor(proxy, answers, self.intercept_port)
                await interceptor.start()
        except SandboxError as exc:
            await self._undo(lease, ns, resolver, proxy, rules, cg, interceptor)
            egress_audit.close()
            self.audit(
                {
                    "type": audit_events.SANDBOX_FAILURE,
                    "agent_id": agent_id,
                    "code": exc.error_code,
                    "message": exc.message,
                }
            )
            raise
        except BaseException:
            await self._undo(lease, ns, resolver, proxy, rules, cg, interceptor)
            egress_audit.close()
            raise
        handle = SandboxHandle(
            agent_id,
            lease,
            ns,
            resolver,
            proxy,
            policy,
            cgroup=cg,
            audit_limiter=egress_audit,
            run_dir=self.run_dir,
            interceptor=interceptor,
            denials=denials,
        )
        self.live[agent_id] = handle
        self.audit(
            {
                "type": audit_events.SANDBOX_READY,
                "agent_id": agent_id,
                "address": str(lease.agent_ip),
                "mode": policy.mode,
                "intercept": interceptor is not None,
            }
        )
        return handle

    def intercept_of(self, handle: SandboxHandle) -> Intercept | None:
        """The redirect a live sandbox was set up with (to restore its elements)."""
        if handle.interceptor is None:
            return None
        return Intercept(self.intercept_port, handle.policy.ports)

    def _on_answer(
        self, lease: Lease, policy: EgressPolicy, book: AnswerBook
    ) -> Callable[[str, list[tuple[ipaddress.IPv4Address, int]]], None]:
        """What the resolver's answers open: interception's name bindings, and with
        ``direct_ports`` the nftables elements for direct connections."""

        def fill(name: str, answers: list[tuple[ipaddress.IPv4Address, int]]) -> None:
            book.record(name, answers)
            if not policy.direct_ports:
                return
            elements = [
                DirectElement(address, port, timeout_s=max(ttl, 60))
                for address, ttl in answers
                for port in sorted(policy.direct_ports)
            ]
            with contextlib.suppress(SandboxError):
                self.firewall.add_direct(lease, elements)

        return fill

    async def _undo(
        self,
        lease: Lease | None,
        ns: netns_mod.AgentNetns | None,
        resolver: AgentResolver | None,
        proxy: EgressProxy | None,
        rules: bool,
        cg: cgroups.Cgroup | None = None,
        interceptor: Interceptor | None = None,
    ) -> list[str]:
        problems: list[str] = []
        if cg is not None:
            problems += await asyncio.to_thread(cgroups.destroy, cg)
        if ns is not None:
            procs.kill_all(procs.pids_in_netns(os.fstat(ns.fd).st_ino) if ns.fd >= 0 else [])
        for stop in (interceptor, proxy, resolver):
            if stop is not None:
                try:
                    await stop.stop()
                except Exception as exc:
                    problems.append(f"listener: {exc}")
        if rules and lease is not None:
            try:
                await asyncio.to_thread(self.firewall.remove_agent, lease, self.proxy_port)
            except SandboxError as exc:
                problems.append(exc.message)
        if ns is not None:
            try:
                ns.close()
            except OSError as exc:
                problems.append(f"netns: {exc}")
        if lease is not None:
            self.pool.release(lease)
        return problems

    async def teardown(self, handle: SandboxHandle) -> None:
        """Remove every process, listener, element and interface of the sandbox; idempotent."""
        if handle.closed:
            return
        handle.closed = True
        self.live.pop(handle.agent_id, None)
        problems = await self._undo(
            handle.lease,
            handle.netns,
            handle.resolver,
            handle.proxy,
            True,
            handle.cgroup,
            handle.interceptor,
        )
        if handle.denials is not None:
            handle.denials.log_summary()  # in the run's log context: symphonyctl logs shows it
        for path in handle.files:
            path.unlink(missing_ok=True)
        if handle.audit_limiter is not None:
            handle.audit_limiter.close()  # the last counts, before the teardown record
        record: dict[str, Any] = {
            "type": audit_events.SANDBOX_TEARDOWN,
            "agent_id": handle.agent_id,
        }
        if problems:
            record["problems"] = problems
        if handle.denials is not None:
            record.update(handle.denials.teardown_fields())
        self.audit(record)

    async def close(self) -> None:
        for handle in list(self.live.values()):
            await self.teardown(handle)
        await asyncio.to_thread(cgroups.release, self.instance)
        with contextlib.suppress(OSError):
            self.run_dir.rmdir()
