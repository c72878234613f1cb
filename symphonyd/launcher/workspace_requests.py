"""The dispatcher's workspace requests, answered from the workspace root on disk.

Age cleanup and the orphan report (docs/design/0655) need three answers the launcher alone
can give, because only it may look under the root: how old named workspaces are, what is
under the root at all, and whether a workspace is still idle right before it is removed.
A run's workflow is bound to its typed config here too (``bind_config``), once per run.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from symphonyd.core.api.launcher import (
    RemoveWorkspaceResult,
    RootEntry,
    WorkflowSnapshot,
    WorkspaceListing,
)
from symphonyd.core.config import ServiceConfig, build_service_config
from symphonyd.core.errors import SymphonyError
from symphonyd.core.hostconfig import HostConfig, apply_host_overrides
from symphonyd.core.workflow import WorkflowDefinition
from symphonyd.launcher.workspace import WorkspaceManager
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.launcher")

# launcher.list_workspaces answers at most this many entries (the oldest first), so the
# reply stays far below the IPC frame limit however many directories the root holds.
MAX_LISTED = 2000


def bind_config(
    workflow: WorkflowSnapshot, env: Mapping[str, str], host: HostConfig | None = None
) -> ServiceConfig:
    definition = WorkflowDefinition(
        config=workflow.config, prompt_template=workflow.prompt_template
    )
    config = build_service_config(definition, env=env, workflow_dir=Path(workflow.path).parent)
    return apply_host_overrides(config, host) if host is not None else config


def idle_seconds(path: Path) -> float | None:
    """Seconds since a workspace directory changed; None when there is no directory."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    return max(time.time() - st.st_mtime, 0.0)


async def remove_if_idle(
    manager: WorkspaceManager, identifier: str, min_idle_s: float | None
) -> RemoveWorkspaceResult:
    if min_idle_s is not None:
        # Age cleanup decided on an age the dispatcher saw a moment ago; a workspace
        # used since then is kept (checked here, right before before_remove).
        idle = idle_seconds(manager.path_for(identifier))
        if idle is None or idle < min_idle_s:
            log_event(
                log,
                "workspace_cleanup",
                outcome="kept",
                issue_identifier=identifier,
                reason="used since the cleanup decision" if idle is not None else "gone",
            )
            return RemoveWorkspaceResult(False)
    removed = await manager.remove(identifier)
    return RemoveWorkspaceResult(bool(removed))


def workspace_ages(root: str, identifiers: list[str]) -> dict[str, float | None]:
    """Seconds since each workspace changed; None for none; unsafe ones left out."""
    manager = WorkspaceManager(root)
    ages: dict[str, float | None] = {}
    for identifier in identifiers:
        try:
            path = manager.path_for(identifier)
            st = os.lstat(path)
        except FileNotFoundError:
            ages[identifier] = None
            continue
        except (OSError, SymphonyError):
            continue
        if stat.S_ISDIR(st.st_mode):
            ages[identifier] = max(time.time() - st.st_mtime, 0.0)
    return ages


def list_root(root: str) -> WorkspaceListing:
    """Every entry under the root with its age, the oldest first, at most MAX_LISTED.

    An unreadable root is an error, never an empty listing: the dispatcher must not take
    "cannot look" for "nothing there".
    """
    manager = WorkspaceManager(root)
    try:
        survey = manager.survey()
    except OSError as exc:
        raise SymphonyError(
            f"cannot list the workspace root {manager.root}: {exc.strerror}",
            code="workspace_root_unreadable",
        ) from None
    now = time.time()
    entries = [
        RootEntry(
            # A name that is not UTF-8 is shown with U+FFFD; only valid keys (ASCII)
            # are ever removed, and those by identifier.
            os.fsencode(e.name).decode("utf-8", "replace"),
            None if e.last_used is None else max(now - e.last_used, 0.0),
            e.problem,
        )
        for e in survey[:MAX_LISTED]
    ]
    return WorkspaceListing(str(manager.root), entries, omitted=max(len(survey) - MAX_LISTED, 0))
