"""The typed service config (SPEC 4.1.3, 6) built from a WorkflowDefinition.

:func:`build_service_config` applies the SPEC 6.4 defaults, resolves ``$NAME`` references in
fields documented as env-capable, expands ``~`` and workflow-relative paths, and validates
every typed value (ConfigError naming the field). The environment is passed in as a mapping:
core never reads ``os.environ``.

``tracker.provider`` is adapter-owned and kept verbatim, ``$NAME`` strings included, so the
config object never holds a resolved secret. Adapters call :func:`resolve_provider` with their
own environment, and use ``TrackerConfig.provider_env_refs`` to refuse secrets that were
written into WORKFLOW.md literally.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symphonyd.core.config_extensions import (
    AuditConfig,
    BudgetsConfig,
    ClaudeConfig,
    CleanupConfig,
    SandboxConfig,
    ServerConfig,
    parse_audit,
    parse_budgets,
    parse_claude,
    parse_cleanup,
    parse_sandbox,
    parse_server,
)
from symphonyd.core.config_values import (
    choice,
    echo,
    env_ref_name,
    opt_str,
    req_int,
    req_str,
    section,
    str_list,
)
from symphonyd.core.errors import ConfigError
from symphonyd.core.scheduling import normalize_state_limits
from symphonyd.core.workflow import WorkflowDefinition

AGENT_RUNTIMES = ("codex", "claude")
DEFAULT_CODEX_COMMAND = "codex app-server"
WORKSPACE_DIRNAME = "symphony_workspaces"
HOOK_NAMES = ("after_create", "before_run", "after_run", "before_remove")
# Tracker kinds this project ships adapters for (ARCHITECTURE.md); the tracker daemon's
# registry is the authority at run time, this list serves offline checks.
BUILTIN_TRACKER_KINDS = ("linear", "github", "gitlab", "jira", "asana", "local", "memory")
_USER_HOME = re.compile(r"~[A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    kind: str | None = None
    # Verbatim adapter-owned map; `$NAME` values are unresolved (see resolve_provider).
    provider: dict[str, Any] = field(default_factory=dict)
    # Top-level provider keys whose value was exactly `$NAME`/`${NAME}` -> NAME.
    provider_env_refs: dict[str, str] = field(default_factory=dict)
    required_labels: tuple[str, ...] = ()
    # None: not set in WORKFLOW.md, the selected adapter's documented default applies.
    active_states: tuple[str, ...] | None = None
    terminal_states: tuple[str, ...] | None = None

    @property
    def provider_literal_keys(self) -> frozenset[str]:
        """Provider keys given as literal strings rather than `$NAME` references."""
        return frozenset(
            k
            for k, v in self.provider.items()
            if isinstance(v, str) and k not in self.provider_env_refs
        )


@dataclass(frozen=True, slots=True)
class PollingConfig:
    interval_ms: int = 30_000
    # Extension: how long a running issue may sit outside the active states before
    # reconciliation stops its run, so a hand-off ends on its own (docs/design/0713).
    handoff_grace_ms: int = 20_000


@dataclass(frozen=True, slots=True)
class WorkspaceConfig:
    root: str = ""
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)


@dataclass(frozen=True, slots=True)
class HooksConfig:
    after_create: str | None = None
    before_run: str | None = None
    after_run: str | None = None
    before_remove: str | None = None
    timeout_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class AgentConfig:
    max_concurrent_agents: int = 10
    max_turns: int = 20
    max_retry_backoff_ms: int = 300_000
    max_concurrent_agents_by_state: dict[str, int] = field(default_factory=dict)
    runtime: str = "codex"
    # Names copied from the launcher's own environment into the agent's (the agent's model
    # key); a tracker secret name here refuses the run (docs/design/0552).
    forward_env: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CodexConfig:
    # A shell string run via `bash -lc`; never split, expanded or rewritten.
    command: str = DEFAULT_CODEX_COMMAND
    # Pass-through Codex values (SPEC 5.3.6). The kernel sandbox is the real boundary, so the
    # defaults let Codex work unattended inside it; turn_sandbox_policy None lets the launcher
    # derive a workspace-write policy rooted at the workspace.
    approval_policy: Any = "never"
    thread_sandbox: Any = "workspace-write"
    turn_sandbox_policy: Any = None
    turn_timeout_ms: int = 3_600_000
    read_timeout_ms: int = 5_000
    stall_timeout_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    tracker: TrackerConfig
    polling: PollingConfig
    workspace: WorkspaceConfig
    hooks: HooksConfig
    agent: AgentConfig
    codex: CodexConfig
    claude: ClaudeConfig
    sandbox: SandboxConfig
    budgets: BudgetsConfig
    audit: AuditConfig
    server: ServerConfig

    @property
    def agent_command(self) -> str:
        """The shell command of the selected runtime."""
        return self.claude.command if self.agent.runtime == "claude" else self.codex.command


def build_service_config(
    definition: WorkflowDefinition, *, env: Mapping[str, str], workflow_dir: str | Path
) -> ServiceConfig:
    """Defaults, `$NAME` resolution, coercion and validation; raises ConfigError."""
    raw = definition.config
    if "worker" in raw:
        # Not ignored: an operator who configured SPEC Appendix A's worker hosts must not
        # believe agents run elsewhere while they all run here (docs/design/1100).
        raise ConfigError(
            "worker: worker hosts (SPEC Appendix A) are not supported by this version; "
            "every agent runs on this host",
            code="worker_hosts_unsupported",
            field="worker",
        )
    workspace = section(raw, "workspace")
    return ServiceConfig(
        tracker=_tracker(raw),
        polling=_polling(raw),
        workspace=WorkspaceConfig(
            root=_workspace_root(workspace.get("root"), env, Path(workflow_dir)),
            cleanup=parse_cleanup(workspace),
        ),
        hooks=_hooks(raw),
        agent=_agent(raw),
        codex=_codex(raw),
        claude=parse_claude(raw),
        sandbox=parse_sandbox(raw),
        budgets=parse_budgets(raw),
        audit=parse_audit(raw),
        server=parse_server(raw),
    )


def validate_for_dispatch(
    config: ServiceConfig, supported_kinds: Collection[str]
) -> tuple[ConfigError, ...]:
    """SPEC 6.3 preflight checks that config alone can answer; empty means dispatch may run.

    Whether the adapter accepts ``tracker.provider`` is the tracker daemon's check.
    """
    errors: list[ConfigError] = []
    kind = config.tracker.kind
    if not kind:
        errors.append(
            ConfigError("tracker.kind: is required for dispatch", code="missing_tracker_kind")
        )
    elif kind not in supported_kinds:
        errors.append(
            ConfigError(
                f"tracker.kind: {echo(kind)} is not supported "
                f"(supported: {', '.join(sorted(supported_kinds)) or 'none'})",
                code="unsupported_tracker_kind",
                kind=kind,
            )
        )
    runtime = config.agent.runtime
    if not config.agent_command.strip():
        errors.append(
            ConfigError(
                f"{runtime}.command: must be a non-empty shell command",
                code=f"missing_{runtime}_command",
            )
        )
    return tuple(errors)


def resolve_provider(tracker: TrackerConfig, env: Mapping[str, str]) -> dict[str, Any]:
    """The provider map with `$NAME` values replaced from ``env``.

    An unset or empty variable yields None, which adapters treat as missing (SPEC 5.3.1).
    """
    out = dict(tracker.provider)
    for key, name in tracker.provider_env_refs.items():
        out[key] = env.get(name) or None
    return out


def _tracker(raw: Mapping[Any, Any]) -> TrackerConfig:
    s = section(raw, "tracker")
    kind = opt_str(s, "kind", "tracker.kind")
    provider_raw = s.get("provider")
    if provider_raw is None:
        provider: dict[str, Any] = {}
    elif isinstance(provider_raw, Mapping):
        provider = {str(k): v for k, v in provider_raw.items()}
    else:
        # The value is not echoed: provider maps are where credentials live.
        raise ConfigError("tracker.provider: must be a map", field="tracker.provider")
    refs = {k: name for k, v in provider.items() if (name := env_ref_name(v)) is not None}
    return TrackerConfig(
        kind=kind.strip().lower() if kind is not None and kind.strip() else None,
        provider=provider,
        provider_env_refs=refs,
        required_labels=str_list(s, "required_labels", "tracker.required_labels") or (),
        active_states=str_list(s, "active_states", "tracker.active_states"),
        terminal_states=str_list(s, "terminal_states", "tracker.terminal_states"),
    )


def _polling(raw: Mapping[Any, Any]) -> PollingConfig:
    s = section(raw, "polling")
    return PollingConfig(
        interval_ms=req_int(s, "interval_ms", "polling.interval_ms", 30_000, minimum=1),
        handoff_grace_ms=req_int(
            s, "handoff_grace_ms", "polling.handoff_grace_ms", 20_000, minimum=0
        ),
    )


def _hooks(raw: Mapping[Any, Any]) -> HooksConfig:
    s = section(raw, "hooks")
    scripts = {}
    for name in HOOK_NAMES:
        script = opt_str(s, name, f"hooks.{name}")
        scripts[name] = script if script is not None and script.strip() else None
    return HooksConfig(
        **scripts,
        timeout_ms=req_int(s, "timeout_ms", "hooks.timeout_ms", 60_000, minimum=1),
    )


def _agent(raw: Mapping[Any, Any]) -> AgentConfig:
    s = section(raw, "agent")
    d = AgentConfig()
    by_state = s.get("max_concurrent_agents_by_state")
    if by_state is not None and not isinstance(by_state, Mapping):
        raise ConfigError(
            f"agent.max_concurrent_agents_by_state: must be a map, got {echo(by_state)}",
            field="agent.max_concurrent_agents_by_state",
        )
    return AgentConfig(
        max_concurrent_agents=req_int(
            s,
            "max_concurrent_agents",
            "agent.max_concurrent_agents",
            d.max_concurrent_agents,
            minimum=1,
        ),
        max_turns=req_int(s, "max_turns", "agent.max_turns", d.max_turns, minimum=1),
        max_retry_backoff_ms=req_int(
            s,
            "max_retry_backoff_ms",
            "agent.max_retry_backoff_ms",
            d.max_retry_backoff_ms,
            minimum=1,
        ),
        max_concurrent_agents_by_state=normalize_state_limits(by_state),
        runtime=choice(s, "runtime", "agent.runtime", d.runtime, AGENT_RUNTIMES),
        forward_env=_env_names(s, "forward_env", "agent.forward_env"),
    )


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _env_names(raw: Mapping[Any, Any], key: str, where: str) -> tuple[str, ...]:
    names = str_list(raw, key, where) or ()
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: {echo(name)} is not an environment variable name", field=where
            )
    return tuple(dict.fromkeys(names))


def _codex(raw: Mapping[Any, Any]) -> CodexConfig:
    s = section(raw, "codex")
    d = CodexConfig()
    return CodexConfig(
        command=req_str(s, "command", "codex.command", d.command),
        approval_policy=s.get("approval_policy", d.approval_policy),
        thread_sandbox=s.get("thread_sandbox", d.thread_sandbox),
        turn_sandbox_policy=s.get("turn_sandbox_policy", d.turn_sandbox_policy),
        turn_timeout_ms=req_int(
            s, "turn_timeout_ms", "codex.turn_timeout_ms", d.turn_timeout_ms, minimum=1
        ),
        read_timeout_ms=req_int(
            s, "read_timeout_ms", "codex.read_timeout_ms", d.read_timeout_ms, minimum=1
        ),
        # <= 0 disables stall detection (SPEC 5.3.6), so any integer is valid.
        stall_timeout_ms=req_int(
            s, "stall_timeout_ms", "codex.stall_timeout_ms", d.stall_timeout_ms, minimum=None
        ),
    )


def _workspace_root(value: Any, env: Mapping[str, str], workflow_dir: Path) -> str:
    where = "workspace.root"
    if value is None:
        tmp = env.get("TMPDIR") or "/tmp"  # noqa: S108 - the SPEC's <system-temp> default
        return os.path.abspath(os.path.join(os.path.abspath(tmp), WORKSPACE_DIRNAME))
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty path, got {echo(value)}", field=where)
    text = value.strip()
    name = env_ref_name(text)
    if name is not None:
        resolved = env.get(name, "")
        if not resolved.strip():
            raise ConfigError(
                f"{where}: refers to ${name}, which is unset or empty", field=where, variable=name
            )
        text = resolved.strip()
    elif "$" in text:
        raise ConfigError(
            f"{where}: only a whole-value $NAME or ${{NAME}} reference is supported, "
            f"got {echo(text)}",
            field=where,
        )
    text = expand_home(text, env)
    return os.path.normpath(os.path.join(os.path.abspath(workflow_dir), text))


def expand_home(path: str, env: Mapping[str, str]) -> str:
    """``~`` and ``~/x`` use env HOME (else the password database); ``~user`` uses pwd."""
    if not path.startswith("~"):
        return path
    head, sep, rest = path.partition("/")
    if not _USER_HOME.fullmatch(head):
        return path
    try:
        if head == "~":
            home = env.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
        else:
            home = pwd.getpwnam(head[1:]).pw_dir
    except KeyError:
        raise ConfigError(
            f"workspace.root: cannot expand {echo(head)}: no such user", field="workspace.root"
        ) from None
    return os.path.join(home, rest) if sep else home
