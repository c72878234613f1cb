"""The host config's ``[worker]`` section: the worker hosts agents may run on.

SPEC Appendix A calls these ``worker.ssh_hosts`` and ``worker.max_concurrent_agents_per_host``;
here they live in the operator's host config, never in WORKFLOW.md (docs/design/1100): which
machines run agents, and which addresses the link may reach, are the host operator's trust
decisions, and the addresses become the link unit's ``IPAddressAllow=``.

    [worker]
    max_concurrent_agents_per_host = 8
    local = false             # the control host's own launcher takes runs too (default
                              # false when hosts are listed; with none, everything is local)
    [[worker.hosts]]
    name = "w1"               # the stable id in state, logs and status
    address = "198.18.10.11"  # a literal address, not a name: it is what the firewall allows
    port = 22
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from symphonyd.core.config_values import echo, int_in_range, req_str
from symphonyd.core.errors import ConfigError

WORKER_KEYS = (
    "hosts",
    "local",
    "max_concurrent_agents_per_host",
    "lease_seconds",
    "ssh_user",
    "ssh_key_credential",
    "known_hosts",
)
_HOST_KEYS = ("name", "address", "port")
# A host name is a file name (its socket) and a journal field: short, no dots or slashes.
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_CREDENTIAL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
MAX_HOSTS = 1024
# The control host's own launcher, as a host name: reserved, a worker cannot take it.
LOCAL_HOST = "local"


@dataclass(frozen=True, slots=True)
class WorkerHost:
    name: str
    address: str
    port: int = 22


@dataclass(frozen=True, slots=True)
class WorkerHosts:
    hosts: tuple[WorkerHost, ...] = ()
    max_concurrent_agents_per_host: int = 4
    # How long a worker keeps a run whose link is gone before stopping it (design 1100).
    lease_seconds: int = 30
    ssh_user: str = "symphony-link"
    ssh_key_credential: str = "worker-key"
    known_hosts: str = "/etc/symphony/workers/known_hosts"
    local: bool | None = None  # None: the default (local only when no host is listed)

    @property
    def runs_local(self) -> bool:
        """Whether the control host's own launcher takes runs."""
        return not self.hosts if self.local is None else self.local

    def host(self, name: str) -> WorkerHost | None:
        return next((h for h in self.hosts if h.name == name), None)


def parse_worker(raw: Mapping[str, Any]) -> tuple[WorkerHosts, tuple[str, ...]]:
    """The ``[worker]`` table; returns the value and warnings (unknown keys)."""
    d = WorkerHosts()
    warnings = [f"worker.{key}: unknown key ignored" for key in raw if key not in WORKER_KEYS]
    per_host = int_in_range(
        raw, "max_concurrent_agents_per_host", "worker.max_concurrent_agents_per_host", 1, 10_000
    )
    lease = int_in_range(raw, "lease_seconds", "worker.lease_seconds", 5, 3600)
    user = req_str(raw, "ssh_user", "worker.ssh_user", d.ssh_user)
    if not _USER.fullmatch(user):
        raise ConfigError(f"worker.ssh_user: {echo(user)} is not a user name", field="worker")
    credential = req_str(
        raw, "ssh_key_credential", "worker.ssh_key_credential", d.ssh_key_credential
    )
    if not _CREDENTIAL.fullmatch(credential) or credential in (".", ".."):
        raise ConfigError(
            f"worker.ssh_key_credential: {echo(credential)} is not a systemd credential name",
            field="worker.ssh_key_credential",
        )
    known = req_str(raw, "known_hosts", "worker.known_hosts", d.known_hosts)
    if not known.startswith("/") or "\x00" in known:
        raise ConfigError(
            f"worker.known_hosts: must be an absolute path, got {echo(known)}",
            field="worker.known_hosts",
        )
    hosts, host_warnings = _hosts(raw.get("hosts", []))
    local = raw.get("local")
    if local is not None and not isinstance(local, bool):
        raise ConfigError("worker.local: must be true or false", field="worker.local")
    if local is False and not hosts:
        raise ConfigError(
            "worker.local = false with no [[worker.hosts]]: no host would run agents",
            field="worker.local",
        )
    return (
        WorkerHosts(
            hosts=hosts,
            max_concurrent_agents_per_host=d.max_concurrent_agents_per_host
            if per_host is None
            else per_host,
            lease_seconds=d.lease_seconds if lease is None else lease,
            ssh_user=user,
            ssh_key_credential=credential,
            known_hosts=known,
            local=local,
        ),
        (*warnings, *host_warnings),
    )


def _hosts(raw: Any) -> tuple[tuple[WorkerHost, ...], list[str]]:
    if not isinstance(raw, list) or not all(isinstance(h, dict) for h in raw):
        raise ConfigError(
            "worker.hosts: must be an array of tables ([[worker.hosts]])", field="worker.hosts"
        )
    if len(raw) > MAX_HOSTS:
        raise ConfigError(f"worker.hosts: at most {MAX_HOSTS} hosts", field="worker.hosts")
    hosts: list[WorkerHost] = []
    warnings: list[str] = []
    for i, entry in enumerate(raw):
        where = f"worker.hosts[{i}]"
        warnings.extend(f"{where}.{k}: unknown key ignored" for k in entry if k not in _HOST_KEYS)
        name = req_str(entry, "name", f"{where}.name", "")
        if not _HOST_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}.name: {echo(name)} must be 1-32 lowercase letters, digits or '-'",
                field=f"{where}.name",
            )
        address = req_str(entry, "address", f"{where}.address", "")
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(
                f"{where}.address: {echo(address)} is not an IP address (a literal address "
                "is what the link's firewall allows; names are not resolved)",
                field=f"{where}.address",
            ) from None
        port = int_in_range(entry, "port", f"{where}.port", 1, 65535)
        if name == LOCAL_HOST:
            raise ConfigError(
                f"{where}.name: {name!r} names the control host's own launcher ([worker] local)",
                field=f"{where}.name",
            )
        if any(h.name == name for h in hosts):
            raise ConfigError(f"{where}.name: {name!r} is listed twice", field=f"{where}.name")
        hosts.append(WorkerHost(name, str(ip), 22 if port is None else port))
    return tuple(hosts), warnings
