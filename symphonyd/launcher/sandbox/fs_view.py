"""What an agent (or hook) sees of the filesystem; one description, two enforcers.

:func:`build_fs_view` turns the shipped deny list plus the caller's extra paths (audit and
state directories) into concrete, existing host paths, and lists the git metadata that must be
read-only. ``bwrap.py`` renders it as bubblewrap arguments and ``systemd_unit.py`` as unit
properties, so both paths hide and protect exactly the same things.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from symphonyd.launcher.sandbox.errors import FS_FAILED, SandboxError
from symphonyd.launcher.sandbox.policy_files import fs_deny_entries

# Git metadata an agent could use to run code as whoever next runs git there, or to redirect
# pushes: .git/config (core.hooksPath, remotes), hooks, packed-refs, per-worktree config.
GIT_READONLY = ("config", "config.worktree", "hooks", "info", "packed-refs")


@dataclass(frozen=True, slots=True)
class FsView:
    workspace: Path
    workspace_root: Path
    hidden_dirs: tuple[Path, ...]
    hidden_files: tuple[Path, ...]
    readonly: tuple[Path, ...]
    uid: int
    gid: int


def _home_dirs() -> list[Path]:
    return [Path("/root"), *sorted(Path(p) for p in glob.glob("/home/*"))]


def expand(entries: Iterable[str], homes: Iterable[Path]) -> list[Path]:
    homes = list(homes)
    out: list[Path] = []
    for entry in entries:
        if entry.startswith("~/"):
            out.extend(home / entry[2:] for home in homes)
        elif entry.startswith("/"):
            out.append(Path(entry))
    return out


def build_fs_view(
    workspace: Path,
    workspace_root: Path,
    *,
    uid: int,
    gid: int,
    extra_hidden: Iterable[Path] = (),
    deny_entries: Iterable[str] | None = None,
    homes: Iterable[Path] | None = None,
) -> FsView:
    if uid == 0 or gid == 0:
        raise SandboxError("agents never run as root", code=FS_FAILED)
    root = workspace_root.resolve()
    ws = workspace.resolve()
    if not ws.is_dir() or ws == root or root not in ws.parents:
        raise SandboxError("workspace is not a directory inside the workspace root", code=FS_FAILED)
    entries = fs_deny_entries() if deny_entries is None else list(deny_entries)
    candidates = expand(entries, _home_dirs() if homes is None else homes)
    candidates.extend(extra_hidden)
    dirs: dict[Path, None] = {}
    files: dict[Path, None] = {}
    for path in candidates:
        if not os.path.lexists(path):
            continue
        real = path.resolve()
        if real == ws or ws in real.parents:
            continue  # never hide the workspace from itself
        if real.is_dir():
            dirs.setdefault(real, None)
        else:
            files.setdefault(real, None)
    # A file under a hidden directory is already gone; binding over it would only leave an
    # empty placeholder file in the tmpfs.
    for f in list(files):
        if any(d in f.parents for d in dirs):
            del files[f]
    for d in list(dirs):
        if any(other in d.parents for other in dirs):
            del dirs[d]
    git = ws / ".git"
    readonly = tuple(git / name for name in GIT_READONLY if git.is_dir() and (git / name).exists())
    return FsView(ws, root, tuple(dirs), tuple(files), readonly, uid, gid)
