"""Property tests: keys are injective and safe; paths never leave the root, whatever is planted."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from symphonyd.core.errors import WorkspaceError
from symphonyd.core.workspace_paths import (
    MAX_KEY_LENGTH,
    canonicalize,
    is_valid_key,
    safe_workspace_path,
    workspace_key,
)

# Few characters so that many identifiers sanitise to the same text.
NARROW = st.text(alphabet="aB1_-./: \\#\u00e9", min_size=1, max_size=12)
ANY_TEXT = st.text(min_size=1, max_size=200).filter(lambda s: "\x00" not in s)
IDENTIFIERS = st.one_of(NARROW, ANY_TEXT, st.text(alphabet="x", min_size=120, max_size=140))


@st.composite
def identifier_sets(draw: st.DrawFn) -> list[str]:
    base = draw(st.lists(IDENTIFIERS, min_size=1, max_size=12, unique=True))
    # Also spell out other identifiers' keys (and keys with a suffix-shaped tail) verbatim.
    forged = [workspace_key(i) for i in base if workspace_key(i) != i]
    forged += [k + "-0123456789abcdef" for k in forged[:2]]
    return list(dict.fromkeys(base + forged))


@settings(max_examples=400, deadline=None)
@given(identifier_sets())
def test_distinct_identifiers_never_share_a_key(idents: list[str]) -> None:
    keys = [workspace_key(i) for i in idents]
    assert len(set(keys)) == len(idents)


@settings(max_examples=400, deadline=None)
@given(IDENTIFIERS)
def test_every_key_is_in_the_allowed_alphabet(ident: str) -> None:
    key = workspace_key(ident)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key)
    assert key not in (".", "..")
    assert key[0] not in ".-"
    assert len(key) <= MAX_KEY_LENGTH
    assert is_valid_key(key)
    unchanged = re.sub(r"[^A-Za-z0-9._-]", "_", ident) == ident
    if key != ident:
        assert re.search(r"-[0-9a-f]{16}$", key)
    elif not unchanged:
        raise AssertionError("a sanitised identifier must carry a suffix")


PLANT_KINDS = (
    "dir",
    "file",
    "dangling",
    "outside_dir",
    "outside_file",
    "loop",
    "self",
    "to_root",
    "to_sibling",
    "dotdot",
    "chain_out",
    "dir_with_escape_inside",
)
SAFE_CODES = {"workspace_symlink_escape", "workspace_is_root", "workspace_outside_root"}


def _plant(root: Path, outside: Path, name: str, kind: str) -> None:
    target = root / name
    if os.path.lexists(target):
        return
    if kind == "dir":
        target.mkdir()
    elif kind == "file":
        target.write_text("x")
    elif kind == "dangling":
        target.symlink_to(root / "does-not-exist")
    elif kind == "outside_dir":
        target.symlink_to(outside)
    elif kind == "outside_file":
        target.symlink_to(outside / "secret")
    elif kind == "loop":
        (root / (name + ".b")).symlink_to(name)
        target.symlink_to(name + ".b")
    elif kind == "self":
        target.symlink_to(name)
    elif kind == "to_root":
        target.symlink_to(".")
    elif kind == "to_sibling":
        (root / "sibling").mkdir(exist_ok=True)
        target.symlink_to("sibling")
    elif kind == "dotdot":
        target.symlink_to("../" + root.name + "/../" + outside.name)
    elif kind == "chain_out":
        (root / (name + ".hop")).symlink_to(os.path.relpath(outside, root))
        target.symlink_to(name + ".hop")
    elif kind == "dir_with_escape_inside":
        target.mkdir()
        (target / "esc").symlink_to(outside)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(IDENTIFIERS, st.sampled_from(PLANT_KINDS), st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_paths_stay_inside_root_with_planted_symlinks(
    cases: list[tuple[str, str, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp).resolve()
        root = base / "root"
        outside = base / "outside"
        root.mkdir()
        outside.mkdir()
        (outside / "secret").write_text("s")
        for ident, kind, plant in cases:
            if plant:
                _plant(root, outside, workspace_key(ident), kind)
        for ident, _kind, _plant_it in cases:
            location = root / workspace_key(ident)
            try:
                path = safe_workspace_path(root, ident)
            except WorkspaceError as exc:
                assert exc.error_code in SAFE_CODES, exc
                assert location.is_symlink(), "only a planted symlink may be refused"
                continue
            assert path == location
            assert path != root
            assert not path.is_symlink()
            assert canonicalize(path) == path
            assert os.path.realpath(path) == str(path)


@st.composite
def symlink_trees(draw: st.DrawFn) -> list[tuple[str, str]]:
    names = ["a", "b", "c", "d"]
    targets = st.sampled_from(
        ["a", "b", "c/d", "..", ".", "/", "a/..", "b/../c", "missing", "c", "d/x"]
    )
    return draw(st.lists(st.tuples(st.sampled_from(names), targets), max_size=6))


@settings(max_examples=300, deadline=None)
@given(symlink_trees(), st.sampled_from(["a", "b/..", "c/d/..", "a/b/c", "d/../a", "x/../b"]))
def test_canonicalize_agrees_with_the_kernel(links: list[tuple[str, str]], rel: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp).resolve()
        (base / "c").mkdir()
        for name, target in links:
            if not os.path.lexists(base / name):
                (base / name).symlink_to(target)
        probe = base / rel
        try:
            ours = canonicalize(probe)
        except WorkspaceError as exc:
            assert exc.error_code == "path_canonicalize_failed"
            return
        if os.path.exists(probe):
            # Only when the kernel can resolve it is its answer authoritative.
            assert ours == Path(os.path.realpath(probe, strict=True))
