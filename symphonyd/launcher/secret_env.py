"""Which environment variables may reach an agent or a hook, per run (docs/design/0552).

The tracker daemon declares the names its secrets come from (``TrackerProfile.
secret_env_names``, e.g. ``LINEAR_API_KEY`` or whatever ``$NAME`` the workflow's
``tracker.provider`` points at). The launcher asks for them at the start of every run and:

- refuses the run when the workflow's ``agent.forward_env`` asks for one of them (or for a
  name no agent may ever have), with a typed error that names the variable, never its value;
- removes every declared name from the agent's and the hooks' environments, whoever put it
  there (the operator's own agent environment included), so a forwarded tracker secret never
  reaches an agent even when nobody asked for it on purpose.

Values the launcher does forward are secrets too: they are handed to the prompt preview's
redactor, so an issue that quotes the agent's own key does not put it in the audit log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from symphonyd.core.api.tracker import ToolSpecList, TrackerProfile
from symphonyd.core.errors import SymphonyError
from symphonyd.launcher.agents.process import FORBIDDEN_NAMES_TEXT, FORBIDDEN_PREFIXES

log = logging.getLogger("symphonyd.launcher")
FORWARD_REFUSED = "secret_env_forward_refused"


@dataclass(frozen=True)
class EnvPolicy:
    """The environment rules of one run."""

    declared: frozenset[str]  # tracker secret names: never in an agent's or hook's env
    forwarded: Mapping[str, str]  # agent.forward_env values found in the launcher's env

    def strip(self, env: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k not in self.declared}

    @property
    def secret_values(self) -> list[str]:
        return [v for v in self.forwarded.values() if v.strip()]


class ProfileSource(Protocol):
    async def profile(self) -> TrackerProfile: ...


class RunSource(ProfileSource, Protocol):
    async def tool_specs(self) -> ToolSpecList: ...


async def policy_for_run(
    tracker: ProfileSource,
    forward: Iterable[str],
    launcher_env: Mapping[str, str],
    operator_env: Mapping[str, str] | None = None,
) -> EnvPolicy:
    """The policy of a run starting now, from the tracker's current declared names."""
    profile = await tracker.profile()
    if profile.config_error is not None:
        # Without a usable tracker config its secret names are unknown: fail closed.
        raise SymphonyError(
            f"tracker config unusable: {profile.config_error.get('message', '')}",
            code=str(profile.config_error.get("code") or "tracker_unavailable"),
        )
    return env_policy(profile.secret_env_names, forward, launcher_env, operator_env)


async def tools_and_policy(
    tracker: RunSource,
    forward: Iterable[str],
    launcher_env: Mapping[str, str],
    operator_env: Mapping[str, str] | None = None,
) -> tuple[ToolSpecList, EnvPolicy]:
    """The tracker's tool specs and the run's env policy: both round trips in flight at once
    rather than one after the other (bench/README.md, run_stages.py). Either failing ends
    the run before anything is spawned, with the error the sequential order gave: the tool
    specs' first, then the policy's."""
    policy = asyncio.ensure_future(policy_for_run(tracker, forward, launcher_env, operator_env))
    policy.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "unretrieved"
    try:
        specs = await tracker.tool_specs()
    except BaseException:
        policy.cancel()
        raise
    return specs, await policy


def env_policy(
    declared: Iterable[str],
    forward: Iterable[str],
    launcher_env: Mapping[str, str],
    operator_env: Mapping[str, str] | None = None,
) -> EnvPolicy:
    """The run's policy; raises ``secret_env_forward_refused`` for a forbidden forward."""
    names = frozenset(n for n in declared if n)
    wanted = list(forward)
    refused = [n for n in wanted if n in names or n.startswith(FORBIDDEN_PREFIXES)]
    if refused:
        raise SymphonyError(
            f"agent.forward_env asks to pass {', '.join(sorted(refused))} to the agent; "
            f"tracker secrets and {FORBIDDEN_NAMES_TEXT} names never reach agents (remove "
            "them from agent.forward_env)",
            code=FORWARD_REFUSED,
        )
    stripped = sorted(n for n in (operator_env or {}) if n in names)
    if stripped:
        log.warning("not passing tracker secret %s to agents", ", ".join(stripped))
    missing = [n for n in wanted if n not in launcher_env]
    if missing:
        log.warning("agent.forward_env: %s not set in the launcher's environment", missing)
    return EnvPolicy(names, {n: launcher_env[n] for n in wanted if n in launcher_env})
