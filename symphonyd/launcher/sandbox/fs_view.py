"""What an agent (or hook) sees of the filesystem; one description, two enforcers.

:func:`build_fs_view` turns the shipped deny list plus the caller's extra paths (audit and
state directories) into concrete, existing host paths (wildcards globbed at build time), and
lists the git metadata that must be read-only, creating placeholders for the missing parts.
``bwrap.py`` renders it as bubblewrap arguments and ``systemd_unit.py`` as unit properties, so
both paths hide and protect exactly the same things.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from symphonyd.core.errors import WorkspaceError
from symphonyd.core.hostconfig import DEFAULT_SHM_BYTES
from symphonyd.launcher.git_protect import create_placeholders, scan_git_metadata
from symphonyd.launcher.sandbox.errors import FS_FAILED, SandboxError
from symphonyd.launcher.sandbox.policy_files import fs_deny_entries


@dataclass(frozen=True, slots=True)
class FsView:
    workspace: Path
    workspace_root: Path
    hidden_dirs: tuple[Path, ...]
    hidden_files: tuple[Path, ...]
    readonly: tuple[Path, ...]
    uid: int
    gid: int
    # The agent's own /dev/shm (POSIX shared memory, semaphores): a fresh tmpfs of this size
    # per sandbox, gone with it; [sandbox] shm_size in the host config (docs/design/0853).
    shm_bytes: int = DEFAULT_SHM_BYTES


# Always hidden, whatever the deny list says. /run holds the host's world-connectable Unix
# sockets (journald, D-Bus, systemd-resolved's and userdb's varlink): through them an agent
# could forge journal entries, query host services, or resolve names past its DNS allowlist.
ALWAYS_HIDDEN = (Path("/run"),)


def _home_dirs() -> list[Path]:
    return [Path("/root"), *sorted(Path(p) for p in glob.glob("/home/*"))]


# A wildcard entry that matches more than this is a mistake (or an attack on the argv size of
# bubblewrap): the sandbox is refused rather than built with some matches left visible.
MAX_GLOB_MATCHES = 256
_MAGIC = frozenset("*?[")


def _matches(pattern: Path) -> list[Path]:
    """``pattern`` itself if it has no wildcard, else what it matches now (dotfiles too)."""
    text = str(pattern)
    if not _MAGIC.intersection(text):
        return [pattern]
    found = sorted(glob.glob(text, include_hidden=True))
    if len(found) > MAX_GLOB_MATCHES:
        raise SandboxError(
            f"deny pattern {text} matches {len(found)} paths (limit {MAX_GLOB_MATCHES})",
            code=FS_FAILED,
        )
    return [Path(p) for p in found]


def expand(entries: Iterable[str], homes: Iterable[Path]) -> list[Path]:
    """Deny-list entries as host paths: ``~/`` once per home, wildcards globbed now.

    Wildcards (``*``, ``?``, ``[...]``, one path component each, no ``**``) are matched when
    the sandbox is built, so a file created later is not covered by its pattern; the shipped
    list therefore also hides ``/root`` and ``/home`` wholesale (docs/sandbox.md).
    """
    homes = list(homes)
    out: list[Path] = []
    for entry in entries:
        if entry.startswith("~/"):
            rest = entry[2:]
            for home in homes:
                out.extend(_matches(Path(glob.escape(str(home))) / rest))
        elif entry.startswith("/"):
            out.extend(_matches(Path(entry)))
        else:
            # Silently skipping "*.pem" would look enforced and be nothing: refuse instead.
            raise SandboxError(f"deny entry {entry!r} must start with ~/ or /", code=FS_FAILED)
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
    candidates.extend(ALWAYS_HIDDEN)
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
    # Git metadata that would let the agent run code as whoever next runs git there
    # (docs/design/0604): found by the workspace's scanner, mounted read-only. What is
    # missing gets an empty root-owned placeholder first, or the agent could create it.
    scan = scan_git_metadata(ws)
    if scan.symlinked:
        raise SandboxError(
            "git metadata in the workspace is a symlink and cannot be protected",
            code=FS_FAILED,
            paths=[str(p) for p in scan.symlinked[:5]],
        )
    try:
        created = create_placeholders(scan)
    except WorkspaceError as exc:
        raise SandboxError(exc.message, code=FS_FAILED, **exc.details) from exc
    readonly = tuple(sorted({*scan.protected, *created}))
    return FsView(ws, root, tuple(dirs), tuple(files), readonly, uid, gid)
