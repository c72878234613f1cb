"""Per-issue workspaces: create or reuse, hooks, removal, root survey, free disk.

SPEC 9 and 17.2; ARCHITECTURE.md invariant 1. Every filesystem action on a workspace is preceded
by :func:`safe_key_path`, which proves the path is ``<canonical root>/<key>``, inside the
root, not the root and not a symlink. Removal uses the fd-based ``shutil.rmtree`` that never
follows a symlink out of the tree (docs/design/0603-workspace-lifecycle.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from symphonyd.core.config import HooksConfig
from symphonyd.core.config_extensions import CleanupConfig
from symphonyd.core.errors import WorkspaceError
from symphonyd.core.issue import Issue
from symphonyd.core.workspace_paths import (
    canonical_root,
    is_valid_key,
    require_directory,
    safe_key_path,
    workspace_key,
)
from symphonyd.launcher.hooks import HookResult, HookRunner, RunAs, RunsHooks, hook_script
from symphonyd.runtime.logging import log_event

log = logging.getLogger("symphonyd.launcher.workspace")

# The fd-based rmtree (Linux) is what makes removal safe against symlinks planted inside a
# workspace; refuse to run on a platform where Python falls back to the path-based one.
if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux always has it
    raise ImportError("shutil.rmtree is not symlink-attack resistant on this platform")

WORKSPACE_MODE = 0o700


@dataclass(frozen=True)
class Workspace:
    path: Path
    key: str
    created_now: bool


@dataclass(frozen=True)
class RootSurveyEntry:
    name: str
    last_used: float | None  # directory mtime; None for anything that is not a directory
    problem: str | None  # None: a workspace; otherwise why the entry is not one


@dataclass(frozen=True)
class WorkspaceEntry:
    key: str
    path: Path
    last_used: float  # mtime of the workspace directory, seconds since the epoch


def _hook_error(result: HookResult, key: str) -> WorkspaceError:
    code = "hook_timeout" if result.timed_out else "hook_failed"
    return WorkspaceError(
        f"{result.describe()} (workspace {key})",
        code=code,
        hook=result.name,
        exit_code=result.exit_code,
        key=key,
    )


class WorkspaceManager:
    def __init__(
        self,
        root: str | os.PathLike[str],
        hooks: HooksConfig | None = None,
        hook_runner: RunsHooks | None = None,
        *,
        owner: RunAs | None = None,
    ) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
        # Reassign to apply a reloaded WORKFLOW.md; the next hook uses the new scripts.
        self.hooks = hooks
        self.hook_runner: RunsHooks = (
            hook_runner if hook_runner is not None else HookRunner(run_as=owner)
        )
        self.owner = owner

    # ------------------------------------------------------------------ paths

    def ensure_root(self) -> Path:
        """Create the root (0700) if missing and return its canonical form."""
        if not os.path.lexists(self.root):
            self.root.mkdir(mode=WORKSPACE_MODE, parents=True, exist_ok=True)
        return canonical_root(self.root)

    def path_for(self, identifier: str) -> Path:
        """The checked workspace path for an identifier (it need not exist yet)."""
        return safe_key_path(self.root, workspace_key(identifier))

    def _checked_dir(self, key: str) -> Path:
        """Checked path that must currently be a real directory."""
        path = safe_key_path(self.root, key)
        require_directory(
            path,
            what="workspace",
            code="workspace_not_a_directory",
            missing_code="workspace_missing",
        )
        return path

    @property
    def _timeout_ms(self) -> int:
        return (self.hooks or HooksConfig()).timeout_ms

    # ------------------------------------------------------------------ lifecycle

    async def prepare(self, issue: Issue) -> Workspace:
        """Create or reuse the issue's workspace (SPEC 9.2); run after_create when new.

        A non-directory at the location is refused, never replaced: it might be something
        an operator cares about. A failed or timed-out after_create removes the directory it
        was given and raises (SPEC 9.3, 9.4).
        """
        self.ensure_root()
        key = workspace_key(issue.identifier)
        path = safe_key_path(self.root, key)
        try:
            # mkdir on the final component never follows a symlink planted there: it fails.
            os.mkdir(path, WORKSPACE_MODE)
            created = True
        except FileExistsError:
            created = False
        path = self._checked_dir(key)
        if created and self.owner is not None and os.geteuid() == 0:
            os.chown(path, self.owner.uid, self.owner.gid, follow_symlinks=False)
        _touch(path)
        ws = Workspace(path=path, key=key, created_now=created)
        log_event(
            log,
            "workspace",
            outcome="created" if created else "reused",
            issue_id=issue.id,
            issue_identifier=issue.identifier,
            path=path,
        )

        script = hook_script(self.hooks, "after_create")
        if created and script is not None:
            result = await self._run_hook("after_create", script, key, issue=issue)
            if not result.ok:
                await self._delete(key)
                raise _hook_error(result, key)
        return ws

    async def before_run(self, ws: Workspace, issue: Issue) -> None:
        """Run before_run; failure or timeout aborts the attempt (raises)."""
        self._checked_dir(ws.key)
        _touch(ws.path)
        script = hook_script(self.hooks, "before_run")
        if script is None:
            return
        result = await self._run_hook("before_run", script, ws.key, issue=issue)
        if not result.ok:
            raise _hook_error(result, ws.key)

    def launch_cwd(self, ws: Workspace) -> Path:
        """The cwd for an agent launch, re-proved safe right before it (SPEC 9.5 inv. 1)."""
        path = self._checked_dir(ws.key)
        if Path(os.path.abspath(ws.path)) != path:
            raise WorkspaceError(
                f"launch cwd {ws.path} is not the workspace path {path}",
                code="workspace_outside_root",
                path=str(ws.path),
            )
        return path

    async def after_run(self, ws: Workspace, issue: Issue) -> HookResult | None:
        """Run after_run if the workspace still exists; failures are logged and ignored."""
        try:
            self._checked_dir(ws.key)
        except WorkspaceError as exc:
            log_event(
                log,
                "hook",
                level=logging.WARNING,
                hook="after_run",
                outcome="skipped",
                issue_id=issue.id,
                issue_identifier=issue.identifier,
                error=exc.message,
            )
            return None
        _touch(ws.path)
        script = hook_script(self.hooks, "after_run")
        if script is None:
            return None
        return await self._run_hook("after_run", script, ws.key, issue=issue)

    async def remove(self, identifier: str, issue: Issue | None = None) -> bool:
        """Run before_remove (best effort) and delete the workspace. False if absent."""
        return await self.remove_key(workspace_key(identifier), issue=issue, identifier=identifier)

    async def remove_key(
        self, key: str, *, issue: Issue | None = None, identifier: str | None = None
    ) -> bool:
        path = safe_key_path(self.root, key)
        if not os.path.lexists(path):
            return False
        self._checked_dir(key)
        script = hook_script(self.hooks, "before_remove")
        if script is not None:
            await self._run_hook("before_remove", script, key, issue=issue, identifier=identifier)
        return await self._delete(key)

    async def _delete(self, key: str) -> bool:
        # Re-check right before deleting: a hook may have replaced the directory.
        try:
            path = self._checked_dir(key)
        except WorkspaceError as exc:
            if exc.error_code == "workspace_missing":
                return False
            raise
        await asyncio.to_thread(shutil.rmtree, path)
        log_event(log, "workspace", outcome="removed", path=path)
        return True

    async def _run_hook(
        self,
        name: str,
        script: str,
        key: str,
        *,
        issue: Issue | None = None,
        identifier: str | None = None,
    ) -> HookResult:
        cwd = self._checked_dir(key)
        return await self.hook_runner.run(
            name, script, cwd, timeout_ms=self._timeout_ms, issue=issue, identifier=identifier
        )

    # ------------------------------------------------------------------ housekeeping

    def list_workspaces(self) -> list[WorkspaceEntry]:
        """Real directories under the root whose names are valid keys, sorted by key."""
        try:
            root = canonical_root(self.root)
        except WorkspaceError:
            return []
        entries: list[WorkspaceEntry] = []
        with os.scandir(root) as it:
            for entry in it:
                if not is_valid_key(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while we were listing
                    continue
                if stat.S_ISDIR(st.st_mode):
                    entries.append(WorkspaceEntry(entry.name, Path(entry.path), st.st_mtime))
        return sorted(entries, key=lambda e: e.key)

    def survey(self) -> list[RootSurveyEntry]:
        """Every entry directly under the root, classified, the oldest first.

        Only ``lstat``: nothing is opened or followed. A missing root is empty; an
        unreadable one raises (the caller must not mistake it for "no workspaces").
        """
        root = canonical_root(self.root) if os.path.lexists(self.root) else None
        if root is None:
            return []
        entries: list[RootSurveyEntry] = []
        with os.scandir(root) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed while we were listing
                    continue
                problem: str | None = None
                if stat.S_ISLNK(st.st_mode):
                    problem = "symlink"
                elif not stat.S_ISDIR(st.st_mode):
                    problem = "not a directory"
                elif not is_valid_key(entry.name):
                    problem = "not a valid workspace key"
                is_dir = stat.S_ISDIR(st.st_mode)
                entries.append(
                    RootSurveyEntry(entry.name, st.st_mtime if is_dir else None, problem)
                )
        return sorted(entries, key=lambda e: (e.last_used is None, e.last_used or 0.0, e.name))

    def free_disk_bytes(self) -> int:
        """Bytes available to unprivileged writers on the root's filesystem."""
        st = os.statvfs(canonical_root(self.root))
        return st.f_bavail * st.f_frsize

    def disk_low(self, policy: CleanupConfig) -> bool:
        """True when dispatch should pause: free space under ``min_free_disk_mb``."""
        return self.free_disk_bytes() < policy.min_free_disk_mb * 1024 * 1024


def _touch(path: Path) -> None:
    os.utime(path, follow_symlinks=False)
