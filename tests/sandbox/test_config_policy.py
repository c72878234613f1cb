"""Workflow egress config to policy: built-ins per runtime, hooks without them, denied wins."""

from __future__ import annotations

from symphonyd.core.config_extensions import EgressConfig
from symphonyd.launcher.sandbox.config_policy import egress_policy
from symphonyd.launcher.sandbox.egress_policy import decide


def test_agent_gets_runtime_builtins_plus_operator_list() -> None:
    cfg = EgressConfig(allowed_domains=("github.com",), denied_domains=("chatgpt.com",))
    codex = egress_policy(cfg, runtime="codex")
    assert decide(codex, "api.openai.com", 443).allowed
    assert decide(codex, "github.com", 443).allowed
    assert decide(codex, "chatgpt.com", 443).reason == "denied_domain"
    assert not decide(codex, "api.anthropic.com", 443).allowed
    claude = egress_policy(cfg, runtime="claude")
    assert decide(claude, "api.anthropic.com", 443).allowed


def test_hooks_get_only_their_own_list() -> None:
    hooks = egress_policy(
        EgressConfig(allowed_domains=("github.com",), allowed_ports=(22, 443)), runtime=None
    )
    assert decide(hooks, "github.com", 22).allowed
    assert not decide(hooks, "api.openai.com", 443).allowed


def test_modes_pass_through() -> None:
    assert egress_policy(EgressConfig(mode="block"), runtime="codex").mode == "block"
    assert egress_policy(EgressConfig(), runtime="codex").mode == "allowlist"


def test_sandbox_records_become_audit_events() -> None:
    from symphonyd.core.codec import encode
    from symphonyd.launcher.sandbox.manager import audit_event

    event = audit_event({"type": "egress_deny", "agent_id": "a", "host": "x.test", "port": 443})
    assert event.type == "egress_deny"
    assert event.payload == {"agent_id": "a", "host": "x.test", "port": 443}
    assert "egress_deny" in str(encode(event))
