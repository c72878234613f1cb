"""The transient-unit rendering of a sandbox (no systemd PID 1 here; the escape suite runs
through real units in tests/e2e/test_sandbox_systemd.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from symphonyd.launcher.sandbox import systemd_unit
from symphonyd.launcher.sandbox.errors import SandboxError
from symphonyd.launcher.sandbox.fs_view import FsView, build_fs_view
from symphonyd.launcher.sandbox.systemd_unit import systemd_run_argv, unit_properties


def make_view(tmp_path: Path) -> FsView:
    root = tmp_path / "srv" / "ws"
    ws = root / "issue-1"
    (ws / ".git" / "hooks").mkdir(parents=True)
    (ws / ".git" / "config").write_text("")
    (ws / ".git" / "packed-refs").write_text("")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".netrc").write_text("")
    state = tmp_path / "state"
    state.mkdir()
    return build_fs_view(
        ws,
        root,
        uid=990,
        gid=990,
        extra_hidden=[state, tmp_path / "srv"],  # an ancestor of the workspace
        deny_entries=["~/.ssh", "~/.netrc", "~/.aws", "/nonexistent-symtest"],
        homes=[home],
    )


def props_of(tmp_path: Path, environment: dict[str, str] | None = None) -> tuple[FsView, list[str]]:
    view = make_view(tmp_path)
    props = unit_properties(
        view,
        netns_path="/proc/123/fd/7",
        resolv_conf=Path("/run/symphony-sandbox/symv0-x.resolv"),
        memory_max="4G",
        tasks_max=512,
        cpu_quota="200%",
        environment=environment or {"HTTPS_PROXY": "http://100.64.0.1:3128", "HOME": "/tmp"},
        reachable=["100.64.0.1"],
    )
    return view, props


def test_core_hardening_properties(tmp_path: Path) -> None:
    view, props = props_of(tmp_path)
    for expected in [
        "NetworkNamespacePath=/proc/123/fd/7",
        "User=990",
        "ProtectSystem=strict",
        f"ReadWritePaths={view.workspace}",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "MemoryMax=4G",
        "TasksMax=512",
        "CPUQuota=200%",
        f"BindPaths={view.workspace}",
        "BindReadOnlyPaths=/run/symphony-sandbox/symv0-x.resolv:/etc/resolv.conf",
        "Environment=HTTPS_PROXY=http://100.64.0.1:3128",
        # no PID namespace here: a user namespace keeps other agents' /proc out of reach
        "PrivateUsers=yes",
        "ProtectProc=ptraceable",
        "TemporaryFileSystem=/dev/shm:rw,nosuid,nodev,noexec,mode=1777,size=268435456",
        "RestrictNamespaces=yes",
    ]:
        assert expected in props, expected


def test_hidden_paths_and_git_metadata(tmp_path: Path) -> None:
    view, props = props_of(tmp_path)
    (inaccessible,) = [p for p in props if p.startswith("InaccessiblePaths=")]
    assert f"-{tmp_path / 'home' / '.ssh'}" in inaccessible
    assert f"-{tmp_path / 'home' / '.netrc'}" in inaccessible
    assert f"-{tmp_path / 'state'}" in inaccessible
    assert ".aws" not in inaccessible and "nonexistent" not in inaccessible
    assert (
        f"TemporaryFileSystem={tmp_path / 'srv'}:ro" in props
    )  # ancestor: tmpfs, not inaccessible
    assert f"TemporaryFileSystem={view.workspace_root}:ro" in props
    (ro,) = [p for p in props if p.startswith("BindReadOnlyPaths=") and ".git" in p]
    for name in ("config", "hooks", "packed-refs"):
        assert str(view.workspace / ".git" / name) in ro


def test_root_and_bad_workspaces_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ws" / "a").mkdir(parents=True)
    with pytest.raises(SandboxError):
        build_fs_view(tmp_path / "ws" / "a", tmp_path / "ws", uid=0, gid=0, deny_entries=[])
    with pytest.raises(SandboxError):
        build_fs_view(tmp_path / "ws", tmp_path / "ws", uid=9, gid=9, deny_entries=[])
    with pytest.raises(SandboxError):
        build_fs_view(tmp_path, tmp_path / "ws", uid=9, gid=9, deny_entries=[])
    (tmp_path / "ws" / "link").symlink_to(tmp_path)
    with pytest.raises(SandboxError):
        build_fs_view(tmp_path / "ws" / "link", tmp_path / "ws", uid=9, gid=9, deny_entries=[])


def test_hostile_values_never_reach_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(SandboxError):
        props_of(tmp_path, {"X": "a\nExecStartPre=/bin/sh"})
    with pytest.raises(SandboxError):
        systemd_run_argv("agent; rm -rf /", [], ["true"])
    argv = systemd_run_argv("symphony-agent-1", ["User=990"], ["codex", "app-server"])
    assert argv[:2] == ["systemd-run", "--unit=symphony-agent-1"]
    assert argv[-3:] == ["--", "codex", "app-server"]


def test_unit_description_is_readable_and_hostile_text_is_defused() -> None:
    argv = systemd_run_argv("symphony-agent-1", [], ["true"], description="symphony agent for X-5")
    assert "--description=symphony agent for X-5" in argv
    # An issue identifier is tracker text: no specifier, variable, quote or line survives.
    hostile = 'symphony hook before_run for A-1%n$HOME"\nExecStartPre=/bin/sh é' + "x" * 300
    (desc,) = [a for a in systemd_run_argv("u", [], ["true"], description=hostile)
               if a.startswith("--description=")]  # fmt: skip
    assert desc.startswith("--description=symphony hook before_run for A-1_n_HOME__ExecStartPre=")
    assert len(desc) == len("--description=") + 120
    assert not set(desc) & set('%$"\\\n\x00é')
    # Without one, the unit name (systemd-run would otherwise show the whole command line).
    assert "--description=u" in systemd_run_argv("u", [], ["true"])


def test_dollars_are_escaped_for_pid1_substitution() -> None:
    # PID 1 would replace ${HOME} in a hook script, or in an ISSUE_TITLE value, before bash ran.
    argv = systemd_run_argv("u", [], ["/bin/bash", "-c", 'echo "${X}" $Y', "ISSUE_TITLE=$$(id)"])
    assert argv[-4:] == ["/bin/bash", "-c", 'echo "$${X}" $$Y', "ISSUE_TITLE=$$$$(id)"]


def test_default_deny_list_covers_seed_paths() -> None:
    from symphonyd.launcher.sandbox.policy_files import builtin_domains, fs_deny_entries

    entries = fs_deny_entries()
    for required in ("~/.ssh", "~/.aws", "~/.config/gh", "~/.codex", "~/.claude", "/etc/symphony"):
        assert required in entries
    assert builtin_domains("codex") and builtin_domains("claude")
    assert builtin_domains("../etc") == []


def test_symlinked_git_metadata_fails_closed(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    ws = root / "a"
    (ws / ".git").mkdir(parents=True)
    (ws / ".git" / "hooks").symlink_to(tmp_path)
    with pytest.raises(SandboxError) as info:
        build_fs_view(ws, root, uid=9, gid=9, deny_entries=[])
    assert info.value.error_code == "sandbox_fs_failed"


EXPOSURE_BUDGET = 2.0  # measured 1.6 with systemd 252


def test_systemd_accepts_the_unit_and_scores_it(tmp_path: Path) -> None:
    """systemd's own parser reads every property, and the offline exposure stays in budget."""
    _view, props = props_of(tmp_path)
    assert "IPAddressDeny=any" in props and "IPAddressAllow=100.64.0.1" in props
    unit = tmp_path / "symphony-agent-test.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n" + "\n".join(props) + "\n")
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert str(unit) not in verify.stderr, verify.stderr  # no "Unknown key"/parse warnings
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert match, security.stdout[-500:]
    assert float(match.group(1)) <= EXPOSURE_BUDGET, security.stdout[-3000:]


def test_limits_probe_judges_v2_and_v1_reports() -> None:
    from symphonyd.launcher.sandbox.unit_limits import judge

    v2 = {"memory": "1073737728", "pids": "4093", "cpu": "50000 100000"}
    v1 = {"memory": "1073737728", "pids": "4093", "cpu": "50000"}
    assert judge(v2).enforced and judge(v1).enforced
    # What a unit sees where systemd could not create its memory/pids cgroups: the parent's.
    unlimited = {"memory": "9223372036854771712", "pids": "max", "cpu": "50000"}
    assert judge(unlimited).missing == ("memory", "pids")
    assert judge({}).missing == ("memory", "pids", "cpu")


def test_run_is_hidden_around_systemds_inaccessible_nodes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for d in ("dbus", "systemd/journal", "systemd/inaccessible", "systemd/resolve"):
        (run / d).mkdir(parents=True)
    (run / "docker.sock").write_text("")
    (run / "shm").symlink_to("/dev/shm")
    hidden = systemd_unit._hide_around(run, keep=run / "systemd" / "inaccessible")
    assert hidden == [
        run / "dbus",
        run / "docker.sock",
        run / "systemd" / "journal",
        run / "systemd" / "resolve",
    ]
    # The real /run, as this host has it, goes into InaccessiblePaths= the same way.
    _, props = props_of(tmp_path)
    listed = " ".join(p for p in props if p.startswith("InaccessiblePaths="))
    assert "-/run " not in listed + " " and "-/run/systemd/inaccessible" not in listed
    for entry in systemd_unit._hide_around(Path("/run")):
        assert f"-{entry}" in listed.split("=", 1)[1].split()
