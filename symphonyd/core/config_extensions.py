"""This project's WORKFLOW.md extension sections (SPEC 5.3 allows extra top-level keys).

Each section is a frozen dataclass whose defaults are the safe choice: egress is an allowlist
with nothing allowed, resources are bounded, budgets are off until set. The operator doc
``docs/configuration.md`` lists every key;
``docs/design/0102-config-values-and-secrets.md`` says why the defaults are what they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from symphonyd.core.config_values import (
    choice,
    echo,
    int_in_range,
    opt_int,
    opt_str,
    req_int,
    req_str,
    section,
    str_list,
)
from symphonyd.core.egress_presets import domain_or_none, is_preset, preset_name_or_none
from symphonyd.core.errors import ConfigError

# audit.prompt_preview_chars at most: below the audit writer's 8 KiB string cap, so a
# redacted preview is never cut again (symphonyd.audit.shaping keeps no more).
MAX_PREVIEW_CHARS = 8_000
PREVIEW_CHARS = 500
# audit.transcript_records: the agent's messages and commands kept per run (docs/design/0956).
TRANSCRIPT_RECORDS = 200
MAX_TRANSCRIPT_RECORDS = 5_000

EGRESS_MODES = ("allowlist", "block", "open")
# systemd MemoryMax=/CPUQuota= syntax, restricted to the forms we document.
_MEMORY = re.compile(r"[1-9][0-9]{0,15}[KMGT]?|infinity")
_CPU_QUOTA = re.compile(r"[1-9][0-9]{0,5}%")


@dataclass(frozen=True, slots=True)
class EgressConfig:
    """Network policy for agent (or hook) processes; enforced by the launcher's sandbox."""

    mode: str = "allowlist"
    allowed_domains: tuple[str, ...] = ()
    denied_domains: tuple[str, ...] = ()
    # Empty means "the launcher's default ports"; listing ports narrows or widens that set.
    allowed_ports: tuple[int, ...] = ()
    # Ports reachable only through a CONNECT to the proxy (git over ssh); None: the default.
    ssh_ports: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class ResourcesConfig:
    """cgroup limits for each agent unit, in systemd's own syntax."""

    memory_max: str = "4G"
    tasks_max: int = 512
    cpu_quota: str = "200%"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    egress: EgressConfig = field(default_factory=EgressConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    hooks_egress: EgressConfig = field(default_factory=EgressConfig)


@dataclass(frozen=True, slots=True)
class ClaudeConfig:
    """Claude Code runtime settings, used when ``agent.runtime`` is ``claude``."""

    command: str = "claude"
    model: str | None = None
    turn_timeout_ms: int = 3_600_000
    read_timeout_ms: int = 5_000
    stall_timeout_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class BudgetsConfig:
    """Token caps; None means no cap."""

    tokens_per_issue: int | None = None
    tokens_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class AuditConfig:
    prompt_preview_chars: int = PREVIEW_CHARS  # also the cut of agent message/command previews
    transcript_records: int = TRANSCRIPT_RECORDS  # agent_message + command records per run


@dataclass(frozen=True, slots=True)
class CleanupConfig:
    """Workspace garbage collection; None (0 or null in WORKFLOW.md) disables the age rule."""

    max_age_days: int | None = None
    min_free_disk_mb: int = 1024


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """SPEC 13.7 ``server.port``; the bind address itself is host config, not workflow."""

    port: int | None = None


def parse_claude(raw: Mapping[Any, Any]) -> ClaudeConfig:
    s = section(raw, "claude")
    d = ClaudeConfig()
    return ClaudeConfig(
        command=req_str(s, "command", "claude.command", d.command),
        model=opt_str(s, "model", "claude.model"),
        turn_timeout_ms=req_int(
            s, "turn_timeout_ms", "claude.turn_timeout_ms", d.turn_timeout_ms, minimum=1
        ),
        read_timeout_ms=req_int(
            s, "read_timeout_ms", "claude.read_timeout_ms", d.read_timeout_ms, minimum=1
        ),
        stall_timeout_ms=req_int(
            s, "stall_timeout_ms", "claude.stall_timeout_ms", d.stall_timeout_ms, minimum=None
        ),
    )


def parse_sandbox(raw: Mapping[Any, Any]) -> SandboxConfig:
    s = section(raw, "sandbox")
    res = section(s, "resources", "sandbox.resources")
    d = ResourcesConfig()
    memory_max = req_str(res, "memory_max", "sandbox.resources.memory_max", d.memory_max).strip()
    if not _MEMORY.fullmatch(memory_max):
        raise ConfigError(
            "sandbox.resources.memory_max: must be a size like 4G, 512M or infinity, "
            f"got {echo(memory_max)}",
            field="sandbox.resources.memory_max",
        )
    cpu_quota = req_str(res, "cpu_quota", "sandbox.resources.cpu_quota", d.cpu_quota).strip()
    if not _CPU_QUOTA.fullmatch(cpu_quota):
        raise ConfigError(
            f"sandbox.resources.cpu_quota: must be a percentage like 200%, got {echo(cpu_quota)}",
            field="sandbox.resources.cpu_quota",
        )
    return SandboxConfig(
        egress=_parse_egress(s, "egress"),
        resources=ResourcesConfig(
            memory_max=memory_max,
            tasks_max=req_int(
                res, "tasks_max", "sandbox.resources.tasks_max", d.tasks_max, minimum=1
            ),
            cpu_quota=cpu_quota,
        ),
        hooks_egress=_parse_egress(s, "hooks_egress"),
    )


def _parse_egress(sandbox: Mapping[Any, Any], name: str) -> EgressConfig:
    where = f"sandbox.{name}"
    value = section(sandbox, name, where)
    ports = _ports(value, "allowed_ports", where) or []
    ssh_ports = _ports(value, "ssh_ports", where)
    return EgressConfig(
        mode=choice(value, "mode", f"{where}.mode", "allowlist", EGRESS_MODES),
        allowed_domains=_domains(value, "allowed_domains", f"{where}.allowed_domains"),
        denied_domains=_domains(value, "denied_domains", f"{where}.denied_domains"),
        allowed_ports=tuple(ports),
        ssh_ports=None if ssh_ports is None else tuple(ssh_ports),
    )


def _ports(value: Mapping[Any, Any], key: str, where: str) -> list[int] | None:
    """A list of distinct ports, or None when the key is absent."""
    raw = value.get(key)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ConfigError(f"{where}.{key}: must be a list of ports", field=where)
    ports: list[int] = []
    for item in raw:
        port = int_in_range({"port": item}, "port", f"{where}.{key}", 1, 65535)
        if port is not None and port not in ports:
            ports.append(port)
    return ports


def _domains(raw: Mapping[Any, Any], key: str, where: str) -> tuple[str, ...]:
    """DNS names (optional leading ``*.``; IP literals are refused on purpose so an allowlist
    cannot become "any host at this address") and ``@name`` presets, kept as ``@name``: the
    launcher expands them from its preset files (core/egress_presets.py)."""
    out: dict[str, None] = {}
    for item in str_list(raw, key, where) or ():
        if is_preset(item.strip()):
            preset = preset_name_or_none(item)
            if preset is None:
                raise ConfigError(
                    f"{where}: {echo(item)} is not a preset name (@ and lower-case letters, "
                    "digits, dashes)",
                    field=where,
                )
            out.setdefault(f"@{preset}", None)
            continue
        name = domain_or_none(item)
        if name is None:
            raise ConfigError(
                f"{where}: {echo(item)} is not a DNS name (IP addresses are not accepted)",
                field=where,
            )
        out.setdefault(name, None)
    return tuple(out)


def parse_budgets(raw: Mapping[Any, Any]) -> BudgetsConfig:
    s = section(raw, "budgets")
    return BudgetsConfig(
        tokens_per_issue=opt_int(s, "tokens_per_issue", "budgets.tokens_per_issue", minimum=1),
        tokens_per_day=opt_int(s, "tokens_per_day", "budgets.tokens_per_day", minimum=1),
    )


def parse_audit(raw: Mapping[Any, Any]) -> AuditConfig:
    s = section(raw, "audit")
    return AuditConfig(
        prompt_preview_chars=_or(
            int_in_range(
                s, "prompt_preview_chars", "audit.prompt_preview_chars", 0, MAX_PREVIEW_CHARS
            ),
            PREVIEW_CHARS,
        ),
        transcript_records=_or(
            int_in_range(
                s, "transcript_records", "audit.transcript_records", 0, MAX_TRANSCRIPT_RECORDS
            ),
            TRANSCRIPT_RECORDS,
        ),
    )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def parse_cleanup(workspace: Mapping[Any, Any]) -> CleanupConfig:
    value = section(workspace, "cleanup", "workspace.cleanup")
    return CleanupConfig(
        # 0 and null both turn the age rule off (docs/design/0655-age-cleanup.md).
        max_age_days=opt_int(value, "max_age_days", "workspace.cleanup.max_age_days", minimum=0)
        or None,
        min_free_disk_mb=req_int(
            value, "min_free_disk_mb", "workspace.cleanup.min_free_disk_mb", 1024, minimum=0
        ),
    )


def parse_server(raw: Mapping[Any, Any]) -> ServerConfig:
    s = section(raw, "server")
    return ServerConfig(port=int_in_range(s, "port", "server.port", 0, 65535))
