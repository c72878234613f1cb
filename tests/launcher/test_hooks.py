"""Hook runner with real bash processes: env contract, no interpolation, timeouts, privileges."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from symphonyd.core.config import HooksConfig
from symphonyd.core.issue import Issue
from symphonyd.launcher.hooks import HookResult, HookRunner, RunAs, hook_script
from tests.sandbox.test_instance_cleanup import tagged

T = TypeVar("T")
BASH_OWN_VARS = {"PWD", "SHLVL", "_", "OLDPWD"}
CONTRACT = {
    "PATH",
    "HOME",
    "LANG",
    "ISSUE_ID",
    "ISSUE_IDENTIFIER",
    "ISSUE_TITLE",
    "ISSUE_STATE",
    "ISSUE_URL",
    "ISSUE_LABELS",
}


def run(coro: Coroutine[Any, Any, T]) -> T:
    # A generous bound so a broken kill path fails the test instead of hanging it.
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def make_issue(**over: Any) -> Issue:
    fields: dict[str, Any] = {
        "id": "id-1",
        "identifier": "ABC-1",
        "title": "Fix the thing",
        "state": "Todo",
        "dispatchable": True,
        "url": "https://tracker.invalid/ABC-1",
        "labels": ("bug", "p1"),
    }
    fields.update(over)
    return Issue(**fields)


def hook(
    script: str,
    cwd: Path,
    *,
    issue: Issue | None = None,
    timeout_ms: int = 30_000,
    runner: HookRunner | None = None,
) -> HookResult:
    r = runner or HookRunner()
    return run(r.run("before_run", script, cwd, timeout_ms=timeout_ms, issue=issue or make_issue()))


def _env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in path.read_bytes().split(b"\0"):
        if item:
            k, _, v = item.decode().partition("=")
            out[k] = v
    return out


def test_environment_is_exactly_the_contract(tmp_path: Path) -> None:
    res = hook("env -0 > env.bin; pwd -P > cwd.txt", tmp_path)
    assert res.ok, res
    env = _env_file(tmp_path / "env.bin")
    assert set(env) - BASH_OWN_VARS == CONTRACT
    assert env["ISSUE_ID"] == "id-1"
    assert env["ISSUE_IDENTIFIER"] == "ABC-1"
    assert env["ISSUE_TITLE"] == "Fix the thing"
    assert env["ISSUE_STATE"] == "Todo"
    assert env["ISSUE_URL"] == "https://tracker.invalid/ABC-1"
    assert env["ISSUE_LABELS"] == "bug,p1"
    assert env["LANG"] == "C.UTF-8"
    assert (tmp_path / "cwd.txt").read_text().strip() == str(tmp_path.resolve())


def test_missing_fields_are_empty_strings(tmp_path: Path) -> None:
    res = hook("env -0 > env.bin", tmp_path, issue=make_issue(url=None, labels=()))
    assert res.ok
    env = _env_file(tmp_path / "env.bin")
    assert env["ISSUE_URL"] == ""
    assert env["ISSUE_LABELS"] == ""


def test_tracker_credential_canary_never_reaches_the_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "canary-lin_api_6f1d9a0c"
    for name in ("LINEAR_API_KEY", "SYMPHONY_TRACKER_TOKEN", "GITHUB_TOKEN", "BASH_ENV"):
        monkeypatch.setenv(name, canary)
    res = hook("env; cat /proc/self/environ > environ.bin; set > set.txt", tmp_path)
    assert res.ok
    assert canary not in res.output_tail
    assert canary.encode() not in (tmp_path / "environ.bin").read_bytes()
    assert canary not in (tmp_path / "set.txt").read_text()


HOSTILE = [
    "$(touch {m}1)",
    "`touch {m}2`",
    '"; touch {m}3; "',
    "'; touch {m}4; '",
    "x\ntouch {m}5\n",
    "$({{touch,{m}6}})",
    "${{IFS}}; touch {m}7 #",
]


@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_issue_text_is_data_not_code(tmp_path: Path, template: str, wrapped: bool) -> None:
    marker = tmp_path / "pwned"
    hostile = template.format(m=marker)
    issue = make_issue(title=hostile, identifier=hostile, labels=(hostile, "ok"), state=hostile)
    ws = tmp_path / "ws"
    ws.mkdir()
    # Both careful and careless (unquoted) uses of the variables must stay inert.
    script = 'printf %s "$ISSUE_TITLE" > title.txt\necho $ISSUE_TITLE $ISSUE_LABELS\n'
    runner = HookRunner(command_wrapper=(lambda argv: ["/usr/bin/env", *argv]) if wrapped else None)
    res = hook(script, ws, issue=issue, runner=runner)
    assert res.ok, res
    assert (ws / "title.txt").read_text() == hostile
    assert list(tmp_path.glob("pwned*")) == []


def test_nul_bytes_and_surrogates_in_issue_text_do_not_break_the_hook(tmp_path: Path) -> None:
    res = hook(
        'printf %s "$ISSUE_TITLE" > t.txt',
        tmp_path,
        issue=make_issue(title="a\x00b\ud800c"),
    )
    assert res.ok, res
    assert (tmp_path / "t.txt").read_text() == "ab?c"


def test_failure_reports_exit_code_and_output(tmp_path: Path) -> None:
    res = hook("echo before-failing >&2; exit 3", tmp_path)
    assert not res.ok
    assert res.exit_code == 3
    assert not res.timed_out
    assert "before-failing" in res.output_tail
    assert "exited with status 3" in res.describe()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    script = "sleep 300 & echo $! > grandchild.pid\nsleep 300\n"
    res = hook(script, tmp_path, timeout_ms=500)
    assert res.timed_out
    assert res.exit_code is None
    assert not res.ok
    assert "timed out" in res.describe()
    pid = int((tmp_path / "grandchild.pid").read_text())
    assert _wait_gone(pid), f"grandchild {pid} outlived the hook timeout"


def test_background_children_do_not_outlive_a_successful_hook(tmp_path: Path) -> None:
    res = hook("sleep 300 & echo $! > bg.pid\necho done\n", tmp_path)
    assert res.ok
    assert "done" in res.output_tail
    assert _wait_gone(int((tmp_path / "bg.pid").read_text()))


def test_output_is_bounded_to_the_tail(tmp_path: Path) -> None:
    res = hook("head -c 200000 /dev/zero | tr '\\0' a; echo; echo THE-END", tmp_path)
    assert res.ok
    assert res.output_bytes > 200_000
    assert len(res.output_tail.encode()) <= 4096
    assert res.output_tail.rstrip().endswith("THE-END")


def test_spawn_failure_is_a_result_not_an_exception(tmp_path: Path) -> None:
    runner = HookRunner(shell=("/nonexistent/bash", "-c"))
    res = hook("true", tmp_path, runner=runner)
    assert not res.ok
    assert res.error is not None
    assert "could not start" in res.describe()


def test_command_wrapper_wraps_the_hook(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def wrapper(argv: list[str]) -> list[str]:
        seen.append(argv)
        # Like systemd-run: the wrapped command starts from a different environment.
        return ["/usr/bin/env", "-i", "WRAPPER_ONLY=1", "/usr/bin/env", "WRAPPED_BY=sandbox", *argv]

    runner = HookRunner(command_wrapper=wrapper)
    res = hook('env -0 > env.bin; printf %s "$ISSUE_TITLE" > t.txt', tmp_path, runner=runner)
    assert res.ok, res
    assert seen[0][-5:-1] == ["bash", "--noprofile", "--norc", "-c"]
    env = _env_file(tmp_path / "env.bin")
    # The hook still sees exactly the contract, whatever the wrapper did to the env.
    assert set(env) - BASH_OWN_VARS == CONTRACT
    assert (tmp_path / "t.txt").read_text() == "Fix the thing"


def test_profile_files_are_not_sourced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    marker = tmp_path / "profile-ran"
    for name in (".bash_profile", ".profile", ".bashrc", ".bash_login"):
        (home / name).write_text(f"touch {marker}\n")
    res = hook("true", tmp_path, runner=HookRunner(home=str(home)))
    assert res.ok
    assert not marker.exists()


def test_hook_script_helper_skips_blank_scripts() -> None:
    cfg = HooksConfig(after_create="  \n", before_run="echo hi")
    assert hook_script(cfg, "after_create") is None
    assert hook_script(cfg, "before_run") == "echo hi"
    assert hook_script(None, "before_run") is None


@pytest.mark.root
def test_hook_runs_as_the_given_uid_without_extra_groups(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o700)  # entered before the privilege drop
    runner = HookRunner(run_as=RunAs(uid=65534, gid=65534))
    res = hook('id -u; id -g; id -G; printf "%s\\n" "$HOME"', tmp_path, runner=runner)
    assert res.ok, res
    lines = res.output_tail.split()
    assert lines[:3] == ["65534", "65534", "65534"]
    assert lines[3] == "/nonexistent"  # nobody's home on Debian


def test_a_process_escaping_the_group_cannot_hold_the_runner(tmp_path: Path) -> None:
    # setsid leaves the hook's process group, so killpg cannot reach it; the runner must
    # still return once the hook itself has exited (the sandbox's cgroup reaps such escapees).
    res = hook("setsid sleep 300 > /dev/stdout 2>&1 & echo $! > esc.pid\necho out\n", tmp_path)
    pid = int((tmp_path / "esc.pid").read_text())
    try:
        assert res.ok, res
        assert "out" in res.output_tail
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_cancelling_the_caller_kills_the_hook(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        task = asyncio.create_task(
            HookRunner().run(
                "before_run",
                "sleep 300 & echo $! > bg.pid\necho $$ > main.pid\nsleep 300\n",
                tmp_path,
                timeout_ms=120_000,
                issue=make_issue(),
            )
        )

        def written(name: str) -> bool:
            f = tmp_path / name
            return f.exists() and f.read_text().endswith("\n")

        while not (written("main.pid") and written("bg.pid")):
            await asyncio.sleep(0.02)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return int((tmp_path / "main.pid").read_text()), int((tmp_path / "bg.pid").read_text())

    main_pid, bg_pid = run(scenario())
    assert _wait_gone(main_pid)
    assert _wait_gone(bg_pid)


def _running_with(tag: str) -> list[int]:
    """Live processes (not zombies) running ``sleep <tag>`` (read only)."""
    return [pid for pid in tagged(tag) if not _gone(pid)]


def test_a_stop_while_the_hook_is_starting_leaves_no_process_and_no_fd(tmp_path: Path) -> None:
    """Cancelled inside ``create_subprocess_exec`` (the first thing ``run`` waits for), asyncio
    killed only bash: its children ran on, and the output pipe's read end leaked, once per
    stop that landed there (issue 22.5, the soak's stops during hooks)."""
    tag = f"299.{os.getpid()}{time.monotonic_ns() % 1000}"

    async def scenario() -> None:
        for _ in range(5):
            task = asyncio.create_task(
                HookRunner().run(
                    "before_run",
                    f"sleep {tag} &\nsleep {tag}\n",
                    tmp_path,
                    timeout_ms=120_000,
                    issue=make_issue(),
                )
            )
            await asyncio.sleep(0)  # run() up to its first wait: starting the child
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert task.cancelled()

    fds = len(os.listdir("/proc/self/fd"))
    run(scenario())
    assert len(os.listdir("/proc/self/fd")) == fds, "a pipe end leaked per stop"
    deadline = time.monotonic() + 10
    while _running_with(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running_with(tag) == [], "the hook's processes outlived the stop"
