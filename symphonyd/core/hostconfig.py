"""Host configuration ``/etc/symphony/symphonyd.toml``: where things live on this machine.

WORKFLOW.md says *what* to run and is repository-owned; the host config says *where*: the
workflow path, state/socket/audit directories, the dashboard bind and the name of the systemd
credential holding the tracker token. It is owned by the operator (root), so it is the only
place that may move the dashboard off loopback (``dashboard.allow_remote_bind``).

Unknown sections are errors (a misspelt section would silently drop settings); unknown keys
inside a known section are warnings so a newer config still starts an older daemon.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from symphonyd.core.config import ServiceConfig
from symphonyd.core.config_values import (
    choice,
    echo,
    int_in_range,
    opt_bool,
    opt_str,
    req_str,
    str_list,
)
from symphonyd.core.egress_presets import DEFAULT_OPERATOR_DIR
from symphonyd.core.errors import ConfigError
from symphonyd.core.worker_hosts import WORKER_KEYS, WorkerHosts, parse_worker

DEFAULT_WORKFLOW_PATH = "/etc/symphony/WORKFLOW.md"
LOG_LEVELS = ("debug", "info", "warning", "error")
HOST_CONFIG_PARSE_ERROR = "host_config_parse_error"
# systemd credential names: no slashes, nothing that could escape $CREDENTIALS_DIRECTORY.
_CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")

_TOP_KEYS = ("workflow", "log_level")
# Per-agent egress bounds under [sandbox] (launcher/sandbox/egress_limits.py): key, min, max.
_EGRESS_LIMITS: dict[str, tuple[int, int]] = {
    "max_proxy_connections": (1, 4096),
    "tunnel_idle_timeout": (5, 86_400),
    "tunnel_max_lifetime": (10, 7 * 86_400),
    "max_dns_tcp_connections": (1, 1024),
    "dns_upstream_inflight": (1, 256),
    "dns_queries_per_s": (1, 100_000),
    "dns_cache_entries": (0, 100_000),
    "audit_interval": (1, 3600),
    "audit_full_records": (1, 100_000),
}
_EGRESS_LIMIT_KEYS = tuple(_EGRESS_LIMITS)
_SECTIONS: dict[str, tuple[str, ...]] = {
    "paths": ("state_dir", "runtime_dir", "audit_dir", "workspace_root"),
    "dashboard": ("host", "port", "allow_remote_bind"),
    "tracker": ("credential",),
    "sandbox": (
        "enabled",
        "intercept",
        "egress_presets_dir",
        "local_services",
        "permitted_networks",
        "upstream_dns",
        "address_pool",
        "require_resource_limits",
        *_EGRESS_LIMIT_KEYS,
        "shm_size",
    ),
    # Checked by core/worker_hosts.py, which also knows the [[worker.hosts]] tables.
    "worker": WORKER_KEYS,
}
# Each sandbox's own /dev/shm tmpfs (docs/design/0853); "256M", "1G", or bytes.
DEFAULT_SHM_BYTES = 256 << 20
_SIZE = re.compile(r"([1-9][0-9]{0,12})([KMG]?)")


@dataclass(frozen=True, slots=True)
class DashboardBind:
    host: str = "127.0.0.1"
    port: int = 4000
    allow_remote_bind: bool = False


@dataclass(frozen=True, slots=True)
class SandboxHost:
    """Sandbox settings only the host's operator may change (never WORKFLOW.md)."""

    # Off means agents run unconfined: only for benchmarks or hosts without the kernel
    # features; the launcher logs a warning on every run.
    enabled: bool = True
    # Agents' connections that skip the proxy are redirected to it and decided by name
    # (docs/design/0867); off, they meet the drop rule as before.
    intercept: bool = True
    # Operator egress presets (@name in allowed_domains; core/egress_presets.py).
    egress_presets_dir: str = DEFAULT_OPERATOR_DIR
    local_services: tuple[str, ...] = ()  # NAME:PORT reached on 127.0.0.1 through the proxy
    permitted_networks: tuple[str, ...] = ()  # private networks names may resolve into
    upstream_dns: tuple[str, ...] = ()  # empty: the nameservers of /etc/resolv.conf
    address_pool: str = "100.64.0.0/16"
    # Where systemd cannot apply sandbox.resources, refuse to start agents (docs/sandbox.md).
    require_resource_limits: bool = True
    # Per-agent egress bounds (docs/sandbox.md "Per-agent limits").
    max_proxy_connections: int = 64
    tunnel_idle_timeout: int = 300  # seconds without a byte either way
    tunnel_max_lifetime: int = 3600  # seconds, busy or not
    max_dns_tcp_connections: int = 8
    dns_upstream_inflight: int = 8
    dns_queries_per_s: int = 200
    dns_cache_entries: int = 512
    audit_interval: int = 60  # seconds per egress audit summary
    audit_full_records: int = 60  # full egress records per agent per interval
    shm_bytes: int = DEFAULT_SHM_BYTES  # size of each sandbox's private /dev/shm


@dataclass(frozen=True, slots=True)
class HostConfig:
    workflow_path: str = DEFAULT_WORKFLOW_PATH
    log_level: str = "info"
    state_dir: str = "/var/lib/symphony"
    runtime_dir: str = "/run/symphony"
    audit_dir: str = "/var/lib/symphony/audit"
    # When set, replaces WORKFLOW.md's workspace.root (see apply_host_overrides).
    workspace_root: str | None = None
    dashboard: DashboardBind = field(default_factory=DashboardBind)
    tracker_credential: str = "tracker"
    sandbox: SandboxHost = field(default_factory=SandboxHost)
    worker: WorkerHosts = field(default_factory=WorkerHosts)


def parse_host_config(text: str) -> tuple[HostConfig, tuple[str, ...]]:
    """Parse TOML text; returns the config and human-readable warnings (unknown keys)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"host config is not valid TOML: {exc}", code=HOST_CONFIG_PARSE_ERROR
        ) from None
    warnings: list[str] = []
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: must be a table, got {echo(value)}", field=key)
            if key != "worker":
                warnings.extend(
                    f"{key}.{sub}: unknown key ignored"
                    for sub in value
                    if sub not in _SECTIONS[key]
                )
        elif key not in _TOP_KEYS:
            if isinstance(value, dict):
                raise ConfigError(
                    f"[{key}]: unknown section (known: {', '.join(_SECTIONS)})", field=key
                )
            warnings.append(f"{key}: unknown key ignored")
    defaults = HostConfig()
    paths: Mapping[str, Any] = raw.get("paths", {})
    dash: Mapping[str, Any] = raw.get("dashboard", {})
    tracker: Mapping[str, Any] = raw.get("tracker", {})
    workspace_root = opt_str(paths, "workspace_root", "paths.workspace_root")
    worker, worker_warnings = parse_worker(raw.get("worker", {}))
    warnings.extend(worker_warnings)
    config = HostConfig(
        workflow_path=_abs_path(raw, "workflow", "workflow", defaults.workflow_path),
        log_level=choice(raw, "log_level", "log_level", defaults.log_level, LOG_LEVELS),
        state_dir=_abs_path(paths, "state_dir", "paths.state_dir", defaults.state_dir),
        runtime_dir=_abs_path(paths, "runtime_dir", "paths.runtime_dir", defaults.runtime_dir),
        audit_dir=_abs_path(paths, "audit_dir", "paths.audit_dir", defaults.audit_dir),
        workspace_root=(
            None
            if workspace_root is None
            else _abs_path(paths, "workspace_root", "paths.workspace_root", "")
        ),
        dashboard=_dashboard(dash),
        tracker_credential=_credential(tracker),
        sandbox=_sandbox(raw.get("sandbox", {})),
        worker=worker,
    )
    return config, tuple(warnings)


def apply_host_overrides(config: ServiceConfig, host: HostConfig) -> ServiceConfig:
    """The host's workspace root, when set, wins over WORKFLOW.md's."""
    if host.workspace_root is None:
        return config
    return dataclasses.replace(
        config, workspace=dataclasses.replace(config.workspace, root=host.workspace_root)
    )


def is_loopback_host(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _abs_path(raw: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = req_str(raw, key, where, default).strip()
    if not value.startswith("/") or "\x00" in value:
        raise ConfigError(f"{where}: must be an absolute path, got {echo(value)}", field=where)
    return value


def _dashboard(raw: Mapping[str, Any]) -> DashboardBind:
    d = DashboardBind()
    host = req_str(raw, "host", "dashboard.host", d.host).strip()
    if not host:
        raise ConfigError("dashboard.host: must not be empty", field="dashboard.host")
    port = int_in_range(raw, "port", "dashboard.port", 0, 65535)
    allow = opt_bool(raw, "allow_remote_bind", "dashboard.allow_remote_bind", d.allow_remote_bind)
    if not allow and not is_loopback_host(host):
        raise ConfigError(
            f"dashboard.host: {echo(host)} is not a loopback address; set "
            "dashboard.allow_remote_bind = true to expose the dashboard beyond this host",
            field="dashboard.host",
        )
    return DashboardBind(host=host, port=d.port if port is None else port, allow_remote_bind=allow)


def _sandbox(raw: Mapping[str, Any]) -> SandboxHost:
    d = SandboxHost()
    pool = req_str(raw, "address_pool", "sandbox.address_pool", d.address_pool)
    try:
        ipaddress.IPv4Network(pool, strict=True)
    except ValueError:
        raise ConfigError(
            f"sandbox.address_pool: {echo(pool)} is not an IPv4 network",
            field="sandbox.address_pool",
        ) from None
    return SandboxHost(
        enabled=opt_bool(raw, "enabled", "sandbox.enabled", d.enabled),
        intercept=opt_bool(raw, "intercept", "sandbox.intercept", d.intercept),
        egress_presets_dir=_abs_path(
            raw, "egress_presets_dir", "sandbox.egress_presets_dir", d.egress_presets_dir
        ),
        local_services=str_list(raw, "local_services", "sandbox.local_services") or (),
        permitted_networks=str_list(raw, "permitted_networks", "sandbox.permitted_networks") or (),
        upstream_dns=str_list(raw, "upstream_dns", "sandbox.upstream_dns") or (),
        require_resource_limits=opt_bool(
            raw, "require_resource_limits", "sandbox.require_resource_limits", True
        ),
        address_pool=pool,
        **_egress_limits(raw, d),
        shm_bytes=_shm_bytes(raw.get("shm_size")),
    )


def _egress_limits(raw: Mapping[str, Any], d: SandboxHost) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, (low, high) in _EGRESS_LIMITS.items():
        value = int_in_range(raw, key, f"sandbox.{key}", low, high)
        out[key] = getattr(d, key) if value is None else value
    return out


def _shm_bytes(value: Any) -> int:
    """``sandbox.shm_size``: bytes, or a string with a K/M/G suffix (1K = 1024); 1M..64G."""
    if value is None:
        return DEFAULT_SHM_BYTES
    text = str(value).strip() if isinstance(value, int | str) else ""
    m = _SIZE.fullmatch(text) if not isinstance(value, bool) else None
    size = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)] if m else 0
    if not (1 << 20) <= size <= (64 << 30):
        raise ConfigError(
            f'sandbox.shm_size: {echo(value)} is not a size from 1M to 64G (e.g. "256M")',
            field="sandbox.shm_size",
        )
    return size


def _credential(raw: Mapping[str, Any]) -> str:
    name = req_str(raw, "credential", "tracker.credential", HostConfig().tracker_credential)
    if not _CREDENTIAL_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(
            f"tracker.credential: {echo(name)} is not a valid systemd credential name",
            field="tracker.credential",
        )
    return name
