"""From the workflow's ``sandbox.egress`` / ``sandbox.hooks_egress`` sections to a policy.

Agents get the built-in names of their runtime (the model API) plus the operator's list;
hooks get only the operator's ``hooks_egress`` list (usually the git remote), never the model
API. ``permitted_networks``, ``direct_ports`` and ``intercept`` are host configuration, not
workflow configuration: a repository's WORKFLOW.md must not be able to open internal networks.
"""

from __future__ import annotations

from collections.abc import Iterable

from symphonyd.core.config_extensions import EgressConfig
from symphonyd.launcher.sandbox.egress_policy import EgressPolicy, EgressPolicyError, build_policy
from symphonyd.launcher.sandbox.errors import SandboxError
from symphonyd.launcher.sandbox.policy_files import builtin_domains


def egress_policy(
    config: EgressConfig,
    *,
    runtime: str | None,
    permitted_networks: Iterable[str] = (),
    direct_ports: Iterable[int] = (),
    local_services: Iterable[str] = (),
    intercept: bool = True,
) -> EgressPolicy:
    try:
        return build_policy(
            mode=config.mode,
            allowed_domains=config.allowed_domains,
            denied_domains=config.denied_domains,
            builtin_domains=builtin_domains(runtime) if runtime else (),
            ports=config.allowed_ports,
            permitted_networks=permitted_networks,
            direct_ports=direct_ports,
            local_services=local_services,
            intercept=intercept,
        )
    except EgressPolicyError as exc:
        raise SandboxError(
            f"egress policy is invalid: {exc.message}", code="sandbox_policy_invalid"
        ) from exc
