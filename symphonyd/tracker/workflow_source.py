"""The tracker section of WORKFLOW.md, re-checked on every call (SPEC 6.2).

Wraps :class:`symphonyd.runtime.workflow_file.WorkflowWatcher`: a bad edit keeps the last good
tracker config in force (and is logged once); a file that was never valid raises until fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from symphonyd.core.config import build_service_config
from symphonyd.runtime.workflow_file import Change, LoadedWorkflow, WorkflowWatcher
from symphonyd.tracker.service import ConfigSource, TrackerSource

log = logging.getLogger(__name__)


def workflow_source(path: str | Path, env: Mapping[str, str]) -> ConfigSource:
    def build(loaded: LoadedWorkflow) -> TrackerSource:
        tracker = build_service_config(
            loaded.definition, env=env, workflow_dir=loaded.directory
        ).tracker
        return TrackerSource(
            tracker.kind,
            dict(tracker.provider),
            tracker.active_states,
            tracker.terminal_states,
            loaded.directory,
        )

    watcher: WorkflowWatcher[TrackerSource] | None = None

    def current() -> TrackerSource:
        nonlocal watcher
        if watcher is None:
            watcher = WorkflowWatcher(path, build)  # raises until the file is valid once
            return watcher.current.value
        result = watcher.poll()
        if result.change is Change.FAILED and result.error is not None:
            log.error(
                "workflow reload failed, keeping the last good tracker config: %s",
                result.error.message,
            )
        return result.current.value

    return current
