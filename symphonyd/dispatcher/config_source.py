"""WORKFLOW.md -> the orchestrator's settings, through the shared watcher and ServiceConfig.

Parsing and validation are core's (``build_service_config``, ``validate_for_dispatch``); this
module only picks the fields scheduling reads and binds the snapshot runs carry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from symphonyd.core.api.launcher import WorkflowSnapshot
from symphonyd.core.config import ServiceConfig
from symphonyd.core.hostconfig import HostConfig
from symphonyd.core.issue import state_key
from symphonyd.core.tracker_kinds import effective_states
from symphonyd.core.workflow_accept import accepted_service_config
from symphonyd.dispatcher.ports import DispatchSettings, LoadedConfig
from symphonyd.runtime.workflow_file import Change, LoadedWorkflow, WorkflowWatcher


def dispatch_settings(cfg: ServiceConfig) -> DispatchSettings:
    # A WORKFLOW.md that names no states gets its tracker kind's documented defaults.
    tracker = cfg.tracker
    active, terminal = effective_states(
        tracker.kind, tracker.active_states, tracker.terminal_states
    )
    return DispatchSettings(
        active_states_raw=tuple(active),
        active_states=frozenset(state_key(s) for s in active),
        terminal_states_raw=tuple(terminal),
        terminal_states=frozenset(state_key(s) for s in terminal),
        required_labels=cfg.tracker.required_labels,
        poll_interval_ms=cfg.polling.interval_ms,
        handoff_grace_ms=cfg.polling.handoff_grace_ms,
        max_concurrent_agents=cfg.agent.max_concurrent_agents,
        max_concurrent_agents_by_state=dict(cfg.agent.max_concurrent_agents_by_state),
        max_retry_backoff_ms=cfg.agent.max_retry_backoff_ms,
        stall_timeout_ms=cfg.codex.stall_timeout_ms,
        tokens_per_issue=cfg.budgets.tokens_per_issue,
        tokens_per_day=cfg.budgets.tokens_per_day,
        workspace_root=cfg.workspace.root or None,
        min_free_disk_bytes=cfg.workspace.cleanup.min_free_disk_mb * 1024 * 1024,
        max_age_days=cfg.workspace.cleanup.max_age_days,
    )


def loaded_config(
    workflow: LoadedWorkflow, *, env: Mapping[str, str], host: HostConfig | None = None
) -> LoadedConfig:
    """Build and preflight-validate (SPEC 6.3); raises the first ConfigError.

    The rule is core's, shared with the tracker daemon, so both keep the same last good
    workflow when an edit is refused.
    """
    cfg = accepted_service_config(
        workflow.definition, env=env, workflow_dir=workflow.directory, host=host
    )
    snapshot = WorkflowSnapshot(
        path=str(workflow.path),
        config=workflow.definition.config,
        prompt_template=workflow.definition.prompt_template,
        fingerprint=workflow.sha256,
    )
    return LoadedConfig(dispatch_settings(cfg), snapshot)


class WorkflowConfigSource:
    """ConfigSource over a WorkflowWatcher; the first load raises (startup must fail)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        host: HostConfig | None = None,
    ) -> None:
        environ = dict(os.environ if env is None else env)
        self.watcher: WorkflowWatcher[LoadedConfig] = WorkflowWatcher(
            path, lambda wf: loaded_config(wf, env=environ, host=host)
        )

    def load(self) -> LoadedConfig:
        result = self.watcher.poll(force=True)
        if result.error is not None:
            raise result.error
        return result.current.value

    def changed(self) -> bool:
        """Cheap stat check for the watch loop: did the file change since the last look?"""
        return self.watcher.poll().change is not Change.UNCHANGED
