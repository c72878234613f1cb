"""From the workflow's ``sandbox.egress`` / ``sandbox.hooks_egress`` sections to a policy.

Agents get the built-in names of their runtime (the model API) plus the operator's list;
hooks get only the operator's ``hooks_egress`` list (usually the git remote), never the model
API. ``permitted_networks``, ``direct_ports`` and ``intercept`` are host configuration, not
workflow configuration: a repository's WORKFLOW.md must not be able to open internal networks.
``@name`` presets in either list are expanded here from the preset files (docs/design/0869).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from symphonyd.core.config_extensions import EgressConfig
from symphonyd.core.egress_presets import EgressPresetError, PresetDirs, expand, preset_dirs
from symphonyd.launcher.sandbox.egress_policy import EgressPolicy, EgressPolicyError, build_policy
from symphonyd.launcher.sandbox.errors import SandboxError
from symphonyd.launcher.sandbox.policy_files import builtin_domains

_log = logging.getLogger(__name__)


def egress_policy(
    config: EgressConfig,
    *,
    runtime: str | None,
    presets: PresetDirs | None = None,
    permitted_networks: Iterable[str] = (),
    direct_ports: Iterable[int] = (),
    local_services: Iterable[str] = (),
    intercept: bool = True,
) -> EgressPolicy:
    try:
        allowed = _expand(config.allowed_domains, presets, "allowed_domains")
        denied = _expand(config.denied_domains, presets, "denied_domains")
        return build_policy(
            mode=config.mode,
            allowed_domains=allowed,
            denied_domains=denied,
            builtin_domains=builtin_domains(runtime) if runtime else (),
            ports=config.allowed_ports,
            permitted_networks=permitted_networks,
            direct_ports=direct_ports,
            local_services=local_services,
            intercept=intercept,
            ssh_ports=config.ssh_ports,
        )
    except (EgressPresetError, EgressPolicyError) as exc:
        raise SandboxError(
            f"egress policy is invalid: {exc.message}", code="sandbox_policy_invalid"
        ) from exc


def _expand(entries: tuple[str, ...], presets: PresetDirs | None, key: str) -> tuple[str, ...]:
    if presets is None:
        presets = preset_dirs()
    expanded = expand(entries, presets, key)
    for name in expanded.shadowed:
        _log.warning(
            "egress preset @%s: the operator's %s replaces the shipped preset of that name",
            name,
            presets.operator / f"{name}.txt",
        )
    return expanded.domains
