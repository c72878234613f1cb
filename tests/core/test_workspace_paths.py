"""Workspace keys, canonicalisation and containment with real directories and symlinks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from symphonyd.core.errors import WorkspaceError
from symphonyd.core.workspace_paths import (
    MAX_KEY_LENGTH,
    canonicalize,
    contained_path,
    identifier_digest,
    is_valid_key,
    safe_key_path,
    safe_workspace_path,
    workspace_key,
)

KEY_RE = re.compile(r"[A-Za-z0-9._-]+")


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize("ident", ["ABC-123", "proj.42", "a_b", "X", "issue-7_v2.1"])
def test_plain_identifiers_keep_their_key(ident: str) -> None:
    assert workspace_key(ident) == ident


def test_key_is_deterministic() -> None:
    assert workspace_key("openai/symphony#123") == workspace_key("openai/symphony#123")
    assert workspace_key("openai/symphony#123").startswith("openai_symphony_123-")


def test_changed_identifier_gets_64_bit_hash_of_the_original() -> None:
    key = workspace_key("a/b")
    assert key == "a_b-" + identifier_digest("a/b")
    assert re.fullmatch(r"a_b-[0-9a-f]{16}", key)


def test_identifiers_that_sanitise_to_the_same_text_get_distinct_keys() -> None:
    idents = ["a/b", "a:b", "a b", "a\\b", "a\u00e9b", "a\nb", "a_b"]
    keys = {workspace_key(i) for i in idents}
    assert len(keys) == len(idents)
    # The unchanged one keeps its plain name; the others share the stem but not the suffix.
    assert "a_b" in keys


def test_plain_key_cannot_impersonate_a_hashed_key() -> None:
    # An identifier spelling out another identifier's hashed key must not get that key.
    forged = workspace_key("a/b")
    assert workspace_key(forged) != forged
    assert workspace_key(forged).startswith(forged + "-")


@pytest.mark.parametrize("ident", [".", "..", "...", "-rf", ".git", "--help", "-", "._x"])
def test_dot_and_dash_prefixes_are_rewritten_and_suffixed(ident: str) -> None:
    key = workspace_key(ident)
    assert key[0] not in ".-"
    assert key not in (".", "..")
    assert re.search(r"-[0-9a-f]{16}$", key)
    assert is_valid_key(key)


def test_long_identifiers_are_truncated_with_hash() -> None:
    a = "x" * 500
    b = "x" * 499 + "y"
    ka, kb = workspace_key(a), workspace_key(b)
    assert len(ka) == len(kb) == MAX_KEY_LENGTH
    assert ka != kb
    plain_max = "y" * MAX_KEY_LENGTH
    assert workspace_key(plain_max) == plain_max


@pytest.mark.parametrize("ident", ["", "a\x00b", "\x00"])
def test_empty_or_nul_identifier_is_invalid(ident: str) -> None:
    with pytest.raises(WorkspaceError) as err:
        workspace_key(ident)
    assert err.value.error_code == "invalid_identifier"


def test_lone_surrogates_and_unicode_still_give_valid_keys() -> None:
    for ident in ["\ud800", "\udfff", "ü", "日本語-1", "\u202eevil"]:
        key = workspace_key(ident)
        assert KEY_RE.fullmatch(key)
    assert workspace_key("\ud800") != workspace_key("\udfff")


# ---------------------------------------------------------------- canonicalize


def test_canonicalize_resolves_dot_segments(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert canonicalize(tmp_path / "a" / "." / "b" / ".." / "b") == tmp_path.resolve() / "a/b"


def test_canonicalize_dotdot_after_symlink_follows_the_target(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    (base / "real" / "deep").mkdir(parents=True)
    (base / "link").symlink_to(base / "real" / "deep")
    # Lexical normalisation would say <base>; the kernel says <base>/real.
    assert canonicalize(base / "link" / "..") == base / "real"
    assert canonicalize(base / "link" / "..") == Path(os.path.realpath(base / "link" / ".."))


def test_canonicalize_relative_symlink_chain(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    (base / "t").mkdir()
    (base / "l1").symlink_to("l2")
    (base / "l2").symlink_to("./t")
    assert canonicalize(base / "l1" / "x") == base / "t" / "x"


def test_canonicalize_keeps_missing_tail(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    assert canonicalize(base / "nope" / "x" / ".." / "y") == base / "nope" / "y"


def test_canonicalize_relative_path_uses_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert canonicalize("sub/../x") == tmp_path.resolve() / "x"


def test_symlink_loop_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(WorkspaceError) as err:
        canonicalize(tmp_path / "a")
    assert err.value.error_code == "path_canonicalize_failed"


def test_self_loop_and_file_as_directory(tmp_path: Path) -> None:
    (tmp_path / "self").symlink_to("self")
    (tmp_path / "f").write_text("x")
    for bad in (tmp_path / "self", tmp_path / "f" / "child"):
        with pytest.raises(WorkspaceError) as err:
            canonicalize(bad)
        assert err.value.error_code == "path_canonicalize_failed"


# ---------------------------------------------------------------- containment


def test_safe_workspace_path_is_root_slash_key(tmp_path: Path) -> None:
    path = safe_workspace_path(tmp_path, "ABC-1")
    assert path == tmp_path.resolve() / "ABC-1"
    assert safe_workspace_path(tmp_path, "../../etc") == tmp_path.resolve() / workspace_key(
        "../../etc"
    )


def test_root_given_through_a_symlink_is_canonicalised(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert safe_workspace_path(tmp_path / "alias", "A-1") == (tmp_path / "real").resolve() / "A-1"


@pytest.mark.parametrize("kind", ["missing", "file", "loop"])
def test_invalid_root(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    if kind == "file":
        root.write_text("x")
    elif kind == "loop":
        root.symlink_to(root)
    with pytest.raises(WorkspaceError) as err:
        safe_workspace_path(root, "A-1")
    assert err.value.error_code == "invalid_workspace_root"


def test_symlink_at_location_pointing_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "A-1").symlink_to(outside)
    with pytest.raises(WorkspaceError) as err:
        safe_workspace_path(root, "A-1")
    assert err.value.error_code == "workspace_symlink_escape"


def test_symlink_to_another_workspace_is_refused(tmp_path: Path) -> None:
    (tmp_path / "B-2").mkdir()
    (tmp_path / "A-1").symlink_to("B-2")
    with pytest.raises(WorkspaceError) as err:
        safe_workspace_path(tmp_path, "A-1")
    assert err.value.error_code == "workspace_symlink_escape"


def test_symlink_to_root_itself_is_refused(tmp_path: Path) -> None:
    (tmp_path / "A-1").symlink_to(".")
    with pytest.raises(WorkspaceError) as err:
        safe_workspace_path(tmp_path, "A-1")
    assert err.value.error_code == "workspace_is_root"


def test_dangling_and_looping_symlinks_at_location_are_refused(tmp_path: Path) -> None:
    (tmp_path / "A-1").symlink_to(tmp_path / "gone")
    (tmp_path / "A-2").symlink_to("A-2")
    for ident in ("A-1", "A-2"):
        with pytest.raises(WorkspaceError) as err:
            safe_workspace_path(tmp_path, ident)
        assert err.value.error_code == "workspace_symlink_escape"


def test_key_path_rejects_non_keys(tmp_path: Path) -> None:
    for key in ("..", ".", "", "a/b", "-x", ".hidden"):
        with pytest.raises(WorkspaceError) as err:
            safe_key_path(tmp_path, key)
        assert err.value.error_code == "invalid_identifier"


def test_contained_path_refuses_escaping_symlinks(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "up").symlink_to("..")
    (ws / "in").symlink_to("sub")
    assert contained_path(ws, "in/x") == ws.resolve() / "sub" / "x"
    for rel in ("up/x", "../ws2", "/etc/passwd", "sub/../../x"):
        with pytest.raises(WorkspaceError) as err:
            contained_path(ws, rel)
        assert err.value.error_code == "workspace_symlink_escape"
