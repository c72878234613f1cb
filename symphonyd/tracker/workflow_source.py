"""The tracker section of WORKFLOW.md, re-checked on every call (SPEC 6.2).

Wraps :class:`symphonyd.runtime.workflow_file.WorkflowWatcher` with the rule the dispatcher
uses to accept an edit (``core.workflow_accept``), so the tracker never adopts a version the
dispatcher refused: a refused edit keeps the last good tracker config in force, and the
refusal rides along on the returned source (``rejected``) for the service to log and report.
A file that was never valid raises until fixed. See docs/design/0155-one-last-good-workflow.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from symphonyd.core.workflow_accept import accepted_service_config
from symphonyd.runtime.workflow_file import LoadedWorkflow, WorkflowWatcher
from symphonyd.tracker.service import ConfigSource, TrackerSource


def workflow_source(path: str | Path, env: Mapping[str, str]) -> ConfigSource:
    def build(loaded: LoadedWorkflow) -> TrackerSource:
        # The whole workflow must pass, not only its tracker section: an edit whose prompt
        # or agent settings the dispatcher refuses is refused here too.
        tracker = accepted_service_config(
            loaded.definition, env=env, workflow_dir=loaded.directory
        ).tracker
        return TrackerSource(
            tracker.kind,
            dict(tracker.provider),
            tracker.active_states,
            tracker.terminal_states,
            loaded.directory,
            workflow_sha256=loaded.sha256,
        )

    watcher: WorkflowWatcher[TrackerSource] | None = None

    def current() -> TrackerSource:
        nonlocal watcher
        if watcher is None:
            watcher = WorkflowWatcher(path, build)  # raises until the file is valid once
            return watcher.current.value
        result = watcher.poll()
        if result.error is not None:
            return dataclasses.replace(result.current.value, rejected=result.error)
        return result.current.value

    return current
