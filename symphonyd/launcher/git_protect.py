"""Which git metadata paths an agent must not be able to write (seed 001 git write model).

Host-side git (hooks such as ``git fetch`` in before_run, operators inspecting a workspace)
reads ``config``, ``hooks`` and friends from the workspace's git metadata. An agent that can
rewrite them can make the host run code (``core.hooksPath``, ``core.fsmonitor``, a hook
script). The sandbox mounts every path listed here read-only; objects and refs stay
writable so ``git add``/``git commit`` work. ARCHITECTURE.md invariant 4,
docs/design/0604-git-metadata-protection.md.

Discovery covers ``.git`` directories at any depth (nested repos), ``.git`` files and
symlinks that point to a gitdir (linked worktrees, submodules), ``commondir`` links,
``modules/`` (submodule gitdirs) and ``worktrees/*``. A pointer whose target lies outside the
workspace is reported in ``outside`` and never followed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from symphonyd.core.errors import WorkspaceError
from symphonyd.core.workspace_paths import canonicalize, contained_path

PROTECTED_NAMES = ("config", "config.worktree", "hooks", "info", "packed-refs")
# Protected names git expects to be directories; every other one is a file.
DIRECTORY_NAMES = frozenset({"hooks", "info"})
WORKTREE_CONFIG_NAMES = ("config", "config.worktree")
# A gitdir pointer file is one short line; anything bigger is not one.
MAX_POINTER_BYTES = 4096


@dataclass
class GitMetadataScan:
    workspace: Path
    roots: list[Path] = field(default_factory=list)  # metadata roots inside the workspace
    protected: list[Path] = field(default_factory=list)  # existing, mountable read-only
    missing: list[Path] = field(default_factory=list)  # absent; the sandbox may mask them
    symlinked: list[Path] = field(default_factory=list)  # symlinks; cannot be mounted over
    outside: list[Path] = field(default_factory=list)  # pointers leading out (or nowhere)


class _Scanner:
    def __init__(self, workspace: Path) -> None:
        self.ws = workspace
        self.scan = GitMetadataScan(workspace)
        self.seen: set[Path] = set()

    def _classify(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.scan.missing.append(path)
            return
        if stat.S_ISLNK(st.st_mode):
            self.scan.symlinked.append(path)
        else:
            self.scan.protected.append(path)

    def _resolve(self, pointer: Path, target: str) -> Path | None:
        """Canonical target of a gitdir/commondir pointer, or None if it leads outside."""
        try:
            canon: Path | None = contained_path(self.ws, pointer.parent / target)
        except WorkspaceError:
            canon = None
        if canon is None or not os.path.isdir(canon):
            self.scan.outside.append(pointer)
            return None
        return canon

    def add_root(self, root: Path) -> None:
        if root in self.seen:
            return
        self.seen.add(root)
        self.scan.roots.append(root)
        for name in PROTECTED_NAMES:
            self._classify(root / name)
        self._worktrees(root / "worktrees")
        self._commondir(root / "commondir")
        self._modules(root / "modules")

    def _worktrees(self, base: Path) -> None:
        if not _real_dir(base):
            return
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            if not entry.is_dir(follow_symlinks=False):
                continue
            wt = Path(entry.path)
            names = {n for n in os.listdir(wt) if n.startswith("config")}
            for name in sorted(names | set(WORKTREE_CONFIG_NAMES)):
                self._classify(wt / name)
            self._commondir(wt / "commondir")

    def _commondir(self, pointer: Path) -> None:
        text = _read_pointer(pointer)
        if text is None:
            return
        target = self._resolve(pointer, text.strip())
        if target is not None:
            self.add_root(target)

    def _modules(self, base: Path) -> None:
        if not _real_dir(base):
            return
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            if "HEAD" in filenames:
                dirnames[:] = []
                self.add_root(Path(dirpath))

    def dot_git(self, entry: Path) -> None:
        """One ``.git`` entry in the work tree: directory, gitdir file or symlink."""
        st = os.lstat(entry)
        if stat.S_ISDIR(st.st_mode):
            self.add_root(entry)
            return
        if stat.S_ISLNK(st.st_mode):
            target = self._resolve(entry, os.readlink(entry))
            if target is not None:
                self.add_root(target)
            return
        text = _read_pointer(entry)
        if text is None or not text.startswith("gitdir:"):
            return
        target = self._resolve(entry, text[len("gitdir:") :].strip())
        if target is not None:
            self.add_root(target)

    def walk(self) -> GitMetadataScan:
        for dirpath, dirnames, filenames in os.walk(self.ws, followlinks=False):
            here = Path(dirpath)
            if ".git" in dirnames or ".git" in filenames:
                self.dot_git(here / ".git")
            # Metadata trees are handled by add_root; never descend into them as work trees.
            dirnames[:] = [d for d in dirnames if d != ".git"]
        return self.scan


def _real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _read_pointer(path: Path) -> str | None:
    """Text of a small regular file (never through a symlink), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, MAX_POINTER_BYTES)
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")


def scan_git_metadata(workspace: str | os.PathLike[str]) -> GitMetadataScan:
    """Every git metadata root under ``workspace`` and its write-protected paths."""
    return _Scanner(canonicalize(workspace)).walk()


def git_protected_paths(workspace: str | os.PathLike[str]) -> list[Path]:
    """Existing paths the sandbox must mount read-only, sorted and without duplicates."""
    return sorted(set(scan_git_metadata(workspace).protected))


def create_placeholders(scan: GitMetadataScan) -> list[Path]:
    """Create every ``missing`` path as an empty, root-owned placeholder; return them.

    A path that does not exist cannot be mounted read-only, and the agent could create it
    (``hooks/post-checkout``, ``config.worktree``). An empty ``hooks``/``info`` directory and
    an empty ``config``/``config.worktree``/``packed-refs`` mean to git exactly what absence
    means, so the placeholders change nothing for git and give the sandbox a mount point.
    Called by the launcher (root) while nothing of the agent runs; each one is created with
    ``O_EXCL``/``mkdir`` relative to a parent opened without following symlinks, so a planted
    link is refused (``WorkspaceError``), never written through.
    """
    created: list[Path] = []
    for path in scan.missing:
        try:
            parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot open {path.parent} to protect {path.name}: {exc.strerror}",
                path=str(path),
            ) from exc
        try:
            _create_one(parent, path)
        finally:
            os.close(parent)
        created.append(path)
    return created


def _create_one(parent: int, path: Path) -> None:
    name = path.name
    try:
        if name in DIRECTORY_NAMES:
            os.mkdir(name, 0o755, dir_fd=parent)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            os.close(os.open(name, flags, 0o644, dir_fd=parent))
        if os.geteuid() == 0:
            os.chown(name, 0, 0, dir_fd=parent, follow_symlinks=False)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot create a placeholder for {path}: {exc.strerror}", path=str(path)
        ) from exc
