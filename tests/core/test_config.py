"""ServiceConfig: SPEC 6.4 defaults, $NAME resolution, paths, validation (SPEC 17.1)."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symphonyd.core.codec import decode, encode
from symphonyd.core.config import (
    BUILTIN_TRACKER_KINDS,
    ServiceConfig,
    build_service_config,
    resolve_provider,
    validate_for_dispatch,
)
from symphonyd.core.errors import ConfigError
from symphonyd.core.workflow import WorkflowDefinition, parse_workflow

ENV = {"HOME": "/home/op", "TMPDIR": "/var/tmp"}


def build(
    config: dict[str, Any], env: dict[str, str] | None = None, wdir: str = "/srv/wf"
) -> ServiceConfig:
    return build_service_config(
        WorkflowDefinition(config=config, prompt_template=""),
        env=ENV if env is None else env,
        workflow_dir=wdir,
    )


def config_error(config: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(config)
    return info.value


def test_defaults_apply_when_optional_values_are_missing() -> None:
    cfg = build({})
    assert cfg.tracker.kind is None
    assert cfg.tracker.provider == {}
    assert cfg.tracker.required_labels == ()
    assert cfg.tracker.active_states is None and cfg.tracker.terminal_states is None
    assert cfg.polling.interval_ms == 30_000
    assert cfg.workspace.root == "/var/tmp/symphony_workspaces"
    assert (cfg.hooks.after_create, cfg.hooks.before_run) == (None, None)
    assert (cfg.hooks.after_run, cfg.hooks.before_remove) == (None, None)
    assert cfg.hooks.timeout_ms == 60_000
    assert cfg.agent.max_concurrent_agents == 10
    assert cfg.agent.max_turns == 20
    assert cfg.agent.max_retry_backoff_ms == 300_000
    assert cfg.agent.max_concurrent_agents_by_state == {}
    assert cfg.agent.runtime == "codex"
    assert cfg.codex.command == "codex app-server"
    assert cfg.codex.turn_timeout_ms == 3_600_000
    assert cfg.codex.read_timeout_ms == 5_000
    assert cfg.codex.stall_timeout_ms == 300_000
    assert cfg.agent_command == "codex app-server"


def test_extension_defaults_are_the_safe_ones() -> None:
    cfg = build({})
    assert cfg.sandbox.egress.mode == "allowlist"
    assert cfg.sandbox.egress.allowed_domains == ()
    assert cfg.sandbox.egress.allowed_ports == ()
    assert cfg.sandbox.hooks_egress.mode == "allowlist"
    assert cfg.sandbox.hooks_egress.allowed_domains == ()
    assert cfg.sandbox.resources.memory_max == "4G"
    assert cfg.sandbox.resources.tasks_max == 512
    assert cfg.sandbox.resources.cpu_quota == "200%"
    assert (cfg.budgets.tokens_per_issue, cfg.budgets.tokens_per_day) == (None, None)
    assert cfg.audit.prompt_preview_chars == 500
    assert cfg.audit.transcript_records == 200
    assert cfg.workspace.cleanup.max_age_days is None
    assert cfg.workspace.cleanup.min_free_disk_mb == 1024
    assert cfg.server.port is None
    assert cfg.claude.command == "claude" and cfg.claude.model is None


def test_default_workspace_root_without_tmpdir_is_under_tmp() -> None:
    assert build({}, env={}).workspace.root == "/tmp/symphony_workspaces"


def test_full_front_matter_is_read() -> None:
    text = Path(__file__).with_name("data_full_workflow.md").read_text()
    cfg = build_service_config(parse_workflow(text), env=ENV, workflow_dir="/srv/wf")
    assert cfg.tracker.kind == "linear"
    assert cfg.tracker.active_states == ("Todo", "In Progress")
    assert cfg.tracker.terminal_states == ("Done", "Cancelled")
    assert cfg.tracker.required_labels == ("symphony",)
    assert cfg.polling.interval_ms == 5000
    assert cfg.hooks.after_create == 'git clone "$REPO" .\nmake deps\n'
    assert cfg.hooks.timeout_ms == 120000
    assert cfg.agent.max_turns == 7
    assert cfg.agent.runtime == "claude"
    assert cfg.agent_command == "claude --verbose"
    assert cfg.claude.model == "claude-sonnet"
    assert cfg.codex.approval_policy == {"reject": {"rules": True}}
    assert cfg.sandbox.egress.allowed_domains == ("github.com", "*.packages.example")
    assert cfg.sandbox.egress.allowed_ports == (443, 22)
    assert cfg.sandbox.hooks_egress.mode == "block"
    assert cfg.sandbox.resources.memory_max == "2G"
    assert cfg.budgets.tokens_per_day == 1_000_000
    assert cfg.server.port == 0
    assert cfg.workspace.cleanup.max_age_days == 14


def test_max_age_days_zero_turns_age_cleanup_off() -> None:
    cleanup = build({"workspace": {"cleanup": {"max_age_days": 0}}}).workspace.cleanup
    assert cleanup.max_age_days is None


def test_numeric_strings_are_accepted_for_integers() -> None:
    assert build({"polling": {"interval_ms": " 1500 "}}).polling.interval_ms == 1500


def test_codex_command_is_preserved_verbatim_as_a_shell_string() -> None:
    command = "  ~/bin/codex --flag '$HOME' \"a b\" && echo $PATH | tee ~/x  "
    cfg = build({"codex": {"command": command}})
    assert cfg.codex.command == command


def test_workspace_root_tilde_expansion_uses_env_home() -> None:
    assert build({"workspace": {"root": "~/ws"}}).workspace.root == "/home/op/ws"
    assert build({"workspace": {"root": "~"}}).workspace.root == "/home/op"


def test_workspace_root_tilde_user_expansion_uses_password_database() -> None:
    root_home = pwd.getpwnam("root").pw_dir
    assert build({"workspace": {"root": "~root/ws"}}).workspace.root == f"{root_home}/ws"
    err = config_error({"workspace": {"root": "~no-such-user-xyz/ws"}})
    assert "workspace.root" in err.message


def test_workspace_root_relative_resolves_against_workflow_dir() -> None:
    cfg = build({"workspace": {"root": "ws/../spaces"}}, wdir="/srv/wf")
    assert cfg.workspace.root == "/srv/wf/spaces"
    assert os.path.isabs(build({"workspace": {"root": "x"}}, wdir="rel").workspace.root)


@pytest.mark.parametrize("ref", ["$WS_ROOT", "${WS_ROOT}"])
def test_workspace_root_var_indirection(ref: str) -> None:
    env = {**ENV, "WS_ROOT": "~/from-env"}
    assert build({"workspace": {"root": ref}}, env=env).workspace.root == "/home/op/from-env"
    relative = build({"workspace": {"root": ref}}, env={"WS_ROOT": "rel"}, wdir="/w")
    assert relative.workspace.root == "/w/rel"


def test_workspace_root_unset_var_is_a_clear_error() -> None:
    err = config_error({"workspace": {"root": "$NOPE_NOT_SET"}})
    assert "workspace.root" in err.message and "NOPE_NOT_SET" in err.message


def test_workspace_root_partial_var_is_refused_rather_than_taken_literally() -> None:
    err = config_error({"workspace": {"root": "$HOME/ws"}})
    assert "whole-value" in err.message


def test_provider_keys_are_preserved_and_env_refs_tracked() -> None:
    provider = {
        "endpoint": "https://tracker.invalid/graphql",
        "api_key": "$LINEAR_API_KEY",
        "team": "${TEAM}",
        "nested": {"x": [1, 2], "token": "$NOT_TOP_LEVEL"},
        "page_size": 50,
    }
    cfg = build({"tracker": {"kind": "Linear", "provider": provider}})
    assert cfg.tracker.kind == "linear"
    assert cfg.tracker.provider == provider
    assert cfg.tracker.provider_env_refs == {"api_key": "LINEAR_API_KEY", "team": "TEAM"}
    assert cfg.tracker.provider_literal_keys == {"endpoint"}
    # The config object never holds a resolved secret.
    assert "sekrit" not in repr(cfg)
    resolved = resolve_provider(cfg.tracker, {"LINEAR_API_KEY": "sekrit", "TEAM": ""})
    assert resolved["api_key"] == "sekrit"
    assert resolved["team"] is None  # empty secret counts as missing (SPEC 5.3.1)
    assert resolved["nested"] == provider["nested"]
    assert resolve_provider(cfg.tracker, {})["api_key"] is None


def test_literal_secret_is_visible_as_literal() -> None:
    cfg = build({"tracker": {"provider": {"api_key": "lin_api_abc"}}})
    assert "api_key" in cfg.tracker.provider_literal_keys
    assert cfg.tracker.provider_env_refs == {}


def test_provider_error_does_not_echo_the_value() -> None:
    err = config_error({"tracker": {"provider": "lin_api_secret_value"}})
    assert "lin_api_secret_value" not in str(err)


def test_per_state_limits_are_normalised_and_invalid_entries_ignored() -> None:
    raw = {" In Progress ": 2, "TODO": "3", "Review": 0, "Blocked": -1, "Bool": True, "ok": 1}
    cfg = build({"agent": {"max_concurrent_agents_by_state": raw}})
    assert cfg.agent.max_concurrent_agents_by_state == {"in progress": 2, "ok": 1}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"hooks": {"timeout_ms": 0}}, "hooks.timeout_ms"),
        ({"hooks": {"timeout_ms": "soon"}}, "hooks.timeout_ms"),
        ({"hooks": {"timeout_ms": True}}, "hooks.timeout_ms"),
        ({"agent": {"max_turns": 0}}, "agent.max_turns"),
        ({"agent": {"max_turns": -3}}, "agent.max_turns"),
        ({"agent": {"max_turns": 2.5}}, "agent.max_turns"),
        ({"agent": {"runtime": "gpt"}}, "agent.runtime"),
        (
            {"agent": {"max_concurrent_agents_by_state": [1]}},
            "agent.max_concurrent_agents_by_state",
        ),
        ({"polling": {"interval_ms": -1}}, "polling.interval_ms"),
        ({"polling": "fast"}, "polling"),
        ({"tracker": {"active_states": "Todo"}}, "tracker.active_states"),
        ({"tracker": {"required_labels": [1]}}, "tracker.required_labels"),
        ({"codex": {"command": ["codex"]}}, "codex.command"),
        ({"hooks": {"after_create": 5}}, "hooks.after_create"),
        ({"workspace": {"root": 42}}, "workspace.root"),
        ({"sandbox": {"egress": {"mode": "maybe"}}}, "sandbox.egress.mode"),
        (
            {"sandbox": {"egress": {"allowed_domains": ["10.0.0.1"]}}},
            "sandbox.egress.allowed_domains",
        ),
        (
            {"sandbox": {"egress": {"allowed_domains": ["bad domain"]}}},
            "sandbox.egress.allowed_domains",
        ),
        ({"sandbox": {"egress": {"allowed_ports": [0]}}}, "sandbox.egress.allowed_ports"),
        ({"sandbox": {"egress": {"ssh_ports": [65536]}}}, "sandbox.egress.ssh_ports"),
        ({"sandbox": {"hooks_egress": {"ssh_ports": 22}}}, "sandbox.hooks_egress.ssh_ports"),
        (
            {"sandbox": {"hooks_egress": {"allowed_ports": "443"}}},
            "sandbox.hooks_egress.allowed_ports",
        ),
        ({"sandbox": {"resources": {"memory_max": "lots"}}}, "sandbox.resources.memory_max"),
        ({"sandbox": {"resources": {"cpu_quota": "2"}}}, "sandbox.resources.cpu_quota"),
        ({"sandbox": {"resources": {"tasks_max": 0}}}, "sandbox.resources.tasks_max"),
        ({"budgets": {"tokens_per_day": 0}}, "budgets.tokens_per_day"),
        ({"audit": {"prompt_preview_chars": -1}}, "audit.prompt_preview_chars"),
        ({"workspace": {"cleanup": {"max_age_days": -1}}}, "workspace.cleanup.max_age_days"),
        ({"audit": {"prompt_preview_chars": 8001}}, "audit.prompt_preview_chars"),
        ({"audit": {"transcript_records": -1}}, "audit.transcript_records"),
        ({"audit": {"transcript_records": 5001}}, "audit.transcript_records"),
        ({"agent": {"forward_env": "OPENAI_API_KEY"}}, "agent.forward_env"),
        ({"agent": {"forward_env": ["OPENAI-API-KEY"]}}, "agent.forward_env"),
        ({"agent": {"forward_env": ["A=B"]}}, "agent.forward_env"),
        ({"workspace": {"cleanup": []}}, "workspace.cleanup"),
        ({"sandbox": {"resources": "big"}}, "sandbox.resources"),
        ({"sandbox": {"egress": ["github.com"]}}, "sandbox.egress"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"claude": {"model": 3}}, "claude.model"),
        ({"codex": {"turn_timeout_ms": 2**31}}, "codex.turn_timeout_ms"),
        ({"codex": {"stall_timeout_ms": -(2**31)}}, "codex.stall_timeout_ms"),
        ({"budgets": {"tokens_per_issue": 2**53}}, "budgets.tokens_per_issue"),
    ],
)
def test_invalid_values_name_the_field(config: dict[str, Any], field: str) -> None:
    err = config_error(config)
    assert err.message.startswith(field + ":"), err.message
    assert err.error_code == "invalid_config"


def test_stall_timeout_may_be_zero_or_negative_to_disable() -> None:
    assert build({"codex": {"stall_timeout_ms": 0}}).codex.stall_timeout_ms == 0
    assert build({"codex": {"stall_timeout_ms": -5}}).codex.stall_timeout_ms == -5


def test_unknown_keys_are_ignored() -> None:
    text = "---\nfuture: {x: 1}\nagent: {new_knob: 3}\n7: numeric key\n---\n"
    cfg = build_service_config(parse_workflow(text), env=ENV, workflow_dir="/srv/wf")
    assert cfg == build({})


def test_blank_hook_is_no_hook() -> None:
    assert build({"hooks": {"before_run": "  \n"}}).hooks.before_run is None


def test_egress_domains_are_normalised_and_deduplicated() -> None:
    egress = {
        "allowed_domains": ["GitHub.com.", "github.com", "*.Example.org"],
        "allowed_ports": [443, 443],
    }
    cfg = build({"sandbox": {"egress": egress}})
    assert cfg.sandbox.egress.allowed_domains == ("github.com", "*.example.org")
    assert cfg.sandbox.egress.allowed_ports == (443,)


def test_ssh_ports_default_empty_and_listed() -> None:
    # None is "the launcher's default" ([22]); an empty list turns the ssh path off.
    assert build({}).sandbox.egress.ssh_ports is None
    off = build({"sandbox": {"egress": {"ssh_ports": []}}})
    assert off.sandbox.egress.ssh_ports == ()
    both = build({"sandbox": {"hooks_egress": {"ssh_ports": [22, 2222, 22]}}})
    assert both.sandbox.hooks_egress.ssh_ports == (22, 2222)


def test_validate_for_dispatch_accepts_a_supported_kind() -> None:
    cfg = build({"tracker": {"kind": "linear"}})
    assert validate_for_dispatch(cfg, BUILTIN_TRACKER_KINDS) == ()


def test_validate_for_dispatch_requires_a_kind() -> None:
    (err,) = validate_for_dispatch(build({}), BUILTIN_TRACKER_KINDS)
    assert err.error_code == "missing_tracker_kind"


def test_validate_for_dispatch_refuses_an_unsupported_kind() -> None:
    (err,) = validate_for_dispatch(build({"tracker": {"kind": "jira"}}), ("linear",))
    assert err.error_code == "unsupported_tracker_kind"
    assert "jira" in err.message and "linear" in err.message


def test_validate_for_dispatch_requires_the_selected_runtime_command() -> None:
    cfg = build({"tracker": {"kind": "memory"}, "codex": {"command": "  "}})
    (err,) = validate_for_dispatch(cfg, BUILTIN_TRACKER_KINDS)
    assert err.error_code == "missing_codex_command"
    claude = build(
        {"tracker": {"kind": "memory"}, "agent": {"runtime": "claude"}, "claude": {"command": ""}}
    )
    (err,) = validate_for_dispatch(claude, BUILTIN_TRACKER_KINDS)
    assert err.error_code == "missing_claude_command"
    # The codex command does not matter when claude is selected.
    ok = build(
        {"tracker": {"kind": "memory"}, "agent": {"runtime": "claude"}, "codex": {"command": ""}}
    )
    assert validate_for_dispatch(ok, BUILTIN_TRACKER_KINDS) == ()


def test_config_round_trips_through_the_ipc_codec() -> None:
    # The dispatcher ships the effective config to the launcher as JSON.
    text = Path(__file__).with_name("data_full_workflow.md").read_text()
    cfg = build_service_config(parse_workflow(text), env=ENV, workflow_dir="/srv/wf")
    wire = json.dumps(encode(cfg))
    assert decode(ServiceConfig, json.loads(wire)) == cfg
    assert "$LINEAR_API_KEY" in wire  # the reference travels, never a resolved value


_KEYS = [
    *("tracker", "kind", "provider", "active_states", "required_labels", "polling"),
    *("interval_ms", "workspace", "root", "cleanup", "max_age_days", "hooks", "timeout_ms"),
    *("after_create", "agent", "max_turns", "max_concurrent_agents_by_state", "runtime"),
    *("codex", "command", "stall_timeout_ms", "claude", "model", "sandbox", "egress"),
    *("hooks_egress", "mode", "allowed_domains", "allowed_ports", "resources", "memory_max"),
    *("cpu_quota", "tasks_max", "budgets", "tokens_per_day", "audit", "server", "port"),
]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["$HOME", "${X}", "~", "~root", "42", "4G", "200%", "claude", "block"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=5), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _values, max_size=8))
def test_arbitrary_front_matter_only_ever_raises_config_error(raw: dict[str, Any]) -> None:
    try:
        cfg = build(raw, env={"HOME": "/h", "X": "/x"})
    except ConfigError as err:
        assert err.message.split(":", 1)[0].replace("_", "").replace(".", "").isalnum()
        return
    assert os.path.isabs(cfg.workspace.root)
    assert cfg.agent.max_turns >= 1 and 1 <= cfg.hooks.timeout_ms < 2**31
    assert abs(cfg.codex.stall_timeout_ms) < 2**31 and cfg.polling.interval_ms < 2**31
