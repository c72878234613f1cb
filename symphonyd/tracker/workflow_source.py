"""The tracker section of WORKFLOW.md, re-checked on every call (SPEC 6.2).

Wraps :class:`symphonyd.runtime.workflow_file.WorkflowWatcher` with the rule the dispatcher
uses to accept an edit (``core.workflow_accept``), so the tracker never adopts a version the
dispatcher refused: a refused edit keeps the last good tracker config in force, and the
refusal rides along on the returned source (``rejected``) for the service to log and report.
A file that was never valid since the daemon started is served from the tracker's saved copy
of the last good version (``last_good.py``) when there is one, else it raises until fixed.
See docs/design/0155-one-last-good-workflow.md.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path

from symphonyd.core.errors import SymphonyError
from symphonyd.core.workflow_accept import accepted_service_config
from symphonyd.runtime.workflow_file import LoadedWorkflow, WorkflowWatcher
from symphonyd.tracker import last_good
from symphonyd.tracker.service import ConfigSource, TrackerSource


def workflow_source(path: str | Path, env: Mapping[str, str]) -> ConfigSource:
    saved = last_good.location(env)

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
            adopted=functools.partial(last_good.save, saved, loaded) if saved else None,
        )

    watcher: WorkflowWatcher[TrackerSource] | None = None
    fallback: TrackerSource | None = None

    def from_saved() -> TrackerSource | None:
        copy = last_good.load(saved, Path(path)) if saved else None
        if copy is None:
            return None
        try:
            return build(copy)
        except SymphonyError:
            return None  # refused by today's rule (e.g. an environment change): not served

    def current() -> TrackerSource:
        nonlocal watcher, fallback
        if watcher is None:
            try:
                watcher = WorkflowWatcher(path, build)  # raises until the file is valid once
            except SymphonyError as exc:
                fallback = fallback or from_saved()
                if fallback is None:
                    raise
                return dataclasses.replace(fallback, rejected=exc)
            return watcher.current.value
        result = watcher.poll()
        if result.error is not None:
            return dataclasses.replace(result.current.value, rejected=result.error)
        return result.current.value

    return current
