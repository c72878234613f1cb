"""`symphonyctl workspace path` run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.core.workspace_paths import workspace_key

REPO = Path(__file__).resolve().parents[2]


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", *args],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r.resolve()


@pytest.mark.parametrize("ident", ["ABC-1", "team/ABC 1", "../../etc/passwd", "-rf", "$(id)"])
def test_prints_the_workspace_path(root: Path, ident: str) -> None:
    res = ctl("workspace", "path", "--root", str(root), "--", ident)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{root / workspace_key(ident)}\n"
    assert res.stderr == ""


@pytest.mark.parametrize(
    ("setup", "ident", "code"),
    [
        ("none", "", "invalid_identifier"),
        ("missing-root", "ABC-1", "invalid_workspace_root"),
        ("symlink-out", "ABC-1", "workspace_symlink_escape"),
        ("symlink-root", "ABC-1", "workspace_is_root"),
    ],
)
def test_errors_exit_2_with_code(
    tmp_path: Path, root: Path, setup: str, ident: str, code: str
) -> None:
    use_root = root
    if setup == "missing-root":
        use_root = tmp_path / "absent"
    elif setup == "symlink-out":
        (root / "ABC-1").symlink_to(tmp_path)
    elif setup == "symlink-root":
        (root / "ABC-1").symlink_to(".")
    res = ctl("workspace", "path", "--root", str(use_root), "--", ident)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.startswith(f"error: {code}: ")


def test_default_root_comes_from_host_config(tmp_path: Path, root: Path) -> None:
    config = tmp_path / "symphonyd.toml"
    config.write_text(f'[workspace]\nroot = "{root}"\n')
    res = ctl("workspace", "path", "ABC-1", env={"SYMPHONY_CONFIG": str(config)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(root / "ABC-1")


def test_default_root_falls_back_to_system_temp(tmp_path: Path) -> None:
    (tmp_path / "symphony_workspaces").mkdir()
    env = {"SYMPHONY_CONFIG": str(tmp_path / "no-such.toml"), "TMPDIR": str(tmp_path)}
    res = ctl("workspace", "path", "ABC-1", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path.resolve() / "symphony_workspaces" / "ABC-1")


@pytest.mark.parametrize("text", ["[workspace\nroot = ", "[workspace]\nroot = 3\n"])
def test_broken_host_config_is_an_error_not_a_guess(tmp_path: Path, text: str) -> None:
    (tmp_path / "symphony_workspaces").mkdir()
    config = tmp_path / "bad.toml"
    config.write_text(text)
    env = {"SYMPHONY_CONFIG": str(config), "TMPDIR": str(tmp_path)}
    res = ctl("workspace", "path", "ABC-1", env=env)
    assert res.returncode == 2
    assert res.stderr.startswith("error: invalid_config: ")
    assert res.stdout == ""
    # --root still works around it.
    ok = ctl("workspace", "path", "--root", str(tmp_path), "ABC-1", env=env)
    assert ok.returncode == 0, ok.stderr


def test_listed_in_help() -> None:
    res = ctl("--help")
    assert res.returncode == 0
    assert "workspace" in res.stdout
    sub = ctl("workspace")
    assert sub.returncode == 2
