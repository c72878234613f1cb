"""Per-agent bounds on the launcher's resolver, proxy and egress audit records.

One agent must not be able to exhaust what every agent shares: the launcher's descriptors,
its event loop, the upstream DNS servers and the audit disk. Each bound is per agent (per
sandbox), set in ``[sandbox]`` of the host config, and refused cleanly past the cap (the
refusal is counted and audited through :mod:`audit_limit`). Defaults and reasons:
docs/sandbox.md "Per-agent limits" and docs/design/0855-0858.
"""

from __future__ import annotations

from dataclasses import dataclass

from symphonyd.core.hostconfig import SandboxHost


@dataclass(frozen=True, slots=True)
class EgressLimits:
    # Concurrent proxy connections (tunnels and requests, including ones still sending their
    # head); past it the proxy answers 503 and closes. Two launcher descriptors each.
    proxy_connections: int = 64
    # A tunnel with no byte in either direction for this long is closed...
    tunnel_idle_s: float = 300.0
    # ...and any tunnel is closed after this long, busy or not.
    tunnel_lifetime_s: float = 3600.0
    # Concurrent DNS-over-TCP connections to the agent's resolver; past it: closed at once.
    dns_tcp_connections: int = 8
    # Upstream lookups in flight for this agent (resolver and proxy together); more wait.
    dns_upstream_inflight: int = 8
    # Queries (UDP) waiting for an answer; past it a query gets REFUSED without a task.
    dns_pending: int = 128
    # UDP queries per second (burst: as many); past it a query is dropped unanswered.
    dns_queries_per_s: int = 200
    # Answers cached per agent (positive: the record's TTL capped at 300 s; negative: 30 s).
    dns_cache_entries: int = 512
    # Egress audit records written in full per agent per interval; repeats are counted.
    audit_interval_s: float = 60.0
    audit_full_records: int = 60

    @classmethod
    def from_host(cls, host: SandboxHost) -> EgressLimits:
        return cls(
            proxy_connections=host.max_proxy_connections,
            tunnel_idle_s=float(host.tunnel_idle_timeout),
            tunnel_lifetime_s=float(host.tunnel_max_lifetime),
            dns_tcp_connections=host.max_dns_tcp_connections,
            dns_upstream_inflight=host.dns_upstream_inflight,
            dns_queries_per_s=host.dns_queries_per_s,
            dns_cache_entries=host.dns_cache_entries,
            audit_interval_s=float(host.audit_interval),
            audit_full_records=host.audit_full_records,
        )
