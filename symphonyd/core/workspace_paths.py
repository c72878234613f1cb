"""Workspace keys and path containment (SPEC 4.2, 9.1, 9.5, 15.2; ARCHITECTURE.md invariant 1).

A workspace lives at ``<canonical root>/<key>``. The key is the issue identifier when that is
already a plain, safe directory name; otherwise it is a sanitised stem plus a 64-bit hash of
the original identifier. Keys that carry a hash always end in ``-`` + 16 lowercase hex
digits, and a plain key is never allowed to end that way, so the two families cannot collide
and distinct identifiers get distinct keys (docs/design/0601-workspace-keys.md).

Canonicalisation walks the path one segment at a time with ``lstat``/``readlink`` like the
reference implementation (seed 003), so ``..`` after a symlink lands where the kernel would
land, loops end in a typed error, and missing tails are kept as written.

Only read-only filesystem inspection happens here; creating and deleting belongs to the
launcher, which calls :func:`safe_workspace_path` before every mkdir, hook, launch and
removal.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from symphonyd.core.errors import WorkspaceError

ALLOWED_KEY_CHARS = "A-Za-z0-9._-"
_DISALLOWED = re.compile(r"[^A-Za-z0-9._-]")
_VALID_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# A key that looks like it already carries a hash suffix must have been produced by hashing.
_HASH_SUFFIX = re.compile(r"-[0-9a-f]{16}")
HASH_HEX_CHARS = 16  # 64 bits, the SPEC 4.2 minimum
MAX_KEY_LENGTH = 128  # far below NAME_MAX (255 bytes); keys are ASCII
# Linux gives up after 40 symlinks in one lookup (MAXSYMLINKS); so do we.
MAX_SYMLINK_HOPS = 40


def _is_plain(identifier: str) -> bool:
    """True when the identifier can be used as its own key without any change."""
    return (
        len(identifier) <= MAX_KEY_LENGTH
        and _VALID_KEY.fullmatch(identifier) is not None
        and _HASH_SUFFIX.fullmatch(identifier[-17:]) is None
    )


def identifier_digest(identifier: str) -> str:
    """The 64-bit suffix: sha256 of the UTF-8 bytes (lone surrogates kept distinct)."""
    raw = identifier.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:HASH_HEX_CHARS]


def workspace_key(identifier: str) -> str:
    """Directory name for an issue identifier (SPEC 4.2, 9.5 invariant 3).

    Unchanged when the identifier only uses ``[A-Za-z0-9._-]``, does not start with ``.`` or
    ``-``, is at most 128 characters and does not itself end in a hash-shaped suffix.
    Otherwise: ``<stem>-<16 hex of sha256(identifier)>`` where the stem is the sanitised
    identifier with leading dots/dashes replaced and truncated to fit.
    """
    if not isinstance(identifier, str) or identifier == "" or "\x00" in identifier:
        raise WorkspaceError(
            "issue identifier must be a non-empty string without NUL bytes",
            code="invalid_identifier",
        )
    if _is_plain(identifier):
        return identifier
    stem = _DISALLOWED.sub("_", identifier)
    # A leading "-" reads as an option to tools and a leading "." hides the directory (and
    # covers "." and ".."); replace every leading one so the key starts with a safe char.
    stripped = stem.lstrip(".-")
    stem = "_" * (len(stem) - len(stripped)) + stripped
    stem = stem[: MAX_KEY_LENGTH - HASH_HEX_CHARS - 1]
    return f"{stem}-{identifier_digest(identifier)}"


def is_valid_key(key: str) -> bool:
    """True for any string :func:`workspace_key` can return (used when scanning the root)."""
    return (
        isinstance(key, str)
        and len(key) <= MAX_KEY_LENGTH
        and _VALID_KEY.fullmatch(key) is not None
    )


def _canon_error(path: object, reason: str) -> WorkspaceError:
    return WorkspaceError(
        f"cannot canonicalise {path!s}: {reason}",
        code="path_canonicalize_failed",
        path=str(path),
        reason=reason,
    )


def canonicalize(path: str | os.PathLike[str]) -> Path:
    """Absolute path with every existing symlink resolved and ``.``/``..`` applied in order.

    A missing component ends symlink resolution; the remaining segments are applied
    lexically (nothing below a missing directory can be a symlink). Raises
    ``path_canonicalize_failed`` for symlink loops or chains longer than 40 hops, for a
    non-directory used as a directory, and for components that cannot be inspected.
    """
    text = os.fspath(path)
    if "\x00" in text:
        raise _canon_error(text.replace("\x00", "\\0"), "path contains a NUL byte")
    if not os.path.isabs(text):
        text = os.path.join(os.getcwd(), text)
    pending = [s for s in text.split("/") if s not in ("", ".")]
    pending.reverse()  # a stack: next segment at the end
    resolved: list[str] = []
    hops = 0
    missing = False
    while pending:
        segment = pending.pop()
        if segment == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/" + "/".join([*resolved, segment])
        if missing:
            resolved.append(segment)
            continue
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            missing = True
            resolved.append(segment)
            continue
        except OSError as exc:
            raise _canon_error(text, f"{candidate}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise _canon_error(text, "too many levels of symbolic links (loop?)")
            try:
                target = os.readlink(candidate)
            except OSError as exc:
                raise _canon_error(text, f"{candidate}: {exc.strerror}") from None
            if target.startswith("/"):
                resolved = []
            pending.extend(reversed([s for s in target.split("/") if s not in ("", ".")]))
            continue
        if not stat.S_ISDIR(st.st_mode) and pending:
            raise _canon_error(text, f"{candidate} is not a directory")
        resolved.append(segment)
    return Path("/" + "/".join(resolved))


def is_inside(path: Path, root: Path) -> bool:
    """True when ``path`` is strictly below ``root`` (both already canonical)."""
    return path != root and path.is_relative_to(root)


def canonical_root(root: str | os.PathLike[str]) -> Path:
    """The canonical workspace root; it must exist and be a directory."""
    try:
        canon = canonicalize(root)
    except WorkspaceError as exc:
        raise WorkspaceError(
            f"workspace root {os.fspath(root)} is unusable: {exc.message}",
            code="invalid_workspace_root",
            root=os.fspath(root),
        ) from None
    require_directory(canon, what="workspace root", code="invalid_workspace_root")
    return canon


def require_directory(path: Path, *, what: str, code: str, missing_code: str | None = None) -> None:
    """Raise unless ``path`` itself (not a symlink to one) is a directory."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise WorkspaceError(
            f"{what} {path} does not exist or cannot be inspected: {exc.strerror}",
            code=missing_code or code,
            path=str(path),
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise WorkspaceError(f"{what} {path} is not a directory", code=code, path=str(path))


def safe_key_path(root: str | os.PathLike[str], key: str) -> Path:
    """``<canonical root>/<key>`` after proving it is contained and not a symlink.

    The location may be missing (to be created) or an existing entry; a symlink there is
    refused even when it points inside the root, because it would hand one issue another
    issue's workspace (ARCHITECTURE.md invariant 4).
    """
    if not is_valid_key(key):
        raise WorkspaceError(
            f"{key!r} is not a valid workspace key", code="invalid_identifier", key=str(key)
        )
    croot = canonical_root(root)
    expanded = croot / key
    try:
        canon = canonicalize(expanded)
    except WorkspaceError as exc:
        raise WorkspaceError(
            f"workspace {expanded} cannot be resolved safely: {exc.message}",
            code="workspace_symlink_escape",
            path=str(expanded),
        ) from None
    if canon == croot:
        raise WorkspaceError(
            f"workspace {expanded} resolves to the workspace root",
            code="workspace_is_root",
            path=str(expanded),
            root=str(croot),
        )
    if canon != expanded:
        code = "workspace_symlink_escape"
        where = "outside" if not is_inside(canon, croot) else "elsewhere inside"
        raise WorkspaceError(
            f"workspace {expanded} is a symlink to {canon}, {where} the root",
            code=code,
            path=str(expanded),
            target=str(canon),
        )
    if not is_inside(canon, croot):  # cannot happen for a valid key; kept as the invariant
        raise WorkspaceError(
            f"workspace {canon} is outside the workspace root {croot}",
            code="workspace_outside_root",
            path=str(canon),
            root=str(croot),
        )
    return canon


def safe_workspace_path(root: str | os.PathLike[str], identifier: str) -> Path:
    """Checked workspace path for an issue identifier (SPEC 9.5 invariants 2 and 3)."""
    return safe_key_path(root, workspace_key(identifier))


def contained_path(base: Path, path: str | os.PathLike[str]) -> Path:
    """Canonical form of ``path`` (relative to ``base``) that must stay inside ``base``.

    Used for paths under a workspace (git metadata, files the launcher touches): a symlink
    anywhere on the way that leads out of ``base`` is refused with
    ``workspace_symlink_escape``.
    """
    cbase = canonicalize(base)
    joined = os.path.join(cbase, os.fspath(path))
    canon = canonicalize(joined)
    if canon != cbase and not is_inside(canon, cbase):
        raise WorkspaceError(
            f"{joined} resolves to {canon}, outside {cbase}",
            code="workspace_symlink_escape",
            path=str(joined),
            target=str(canon),
        )
    return canon
