"""Loading WORKFLOW.md from disk, path precedence and reload (SPEC 5.1, 6.2, 17.1)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from symphonyd.core.config import ServiceConfig, build_service_config
from symphonyd.core.errors import ConfigError, WorkflowError
from symphonyd.runtime.workflow_file import (
    Change,
    LoadedWorkflow,
    WorkflowWatcher,
    load_workflow,
    resolve_workflow_path,
)

GOOD = (
    "---\ntracker:\n  kind: memory\npolling:\n  interval_ms: 1000\n---\nHello {{ issue.title }}\n"
)


def to_config(loaded: LoadedWorkflow) -> ServiceConfig:
    return build_service_config(loaded.definition, env={}, workflow_dir=loaded.directory)


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # Push mtime forward so the change is visible even within one timestamp tick.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_explicit_path_wins_over_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "WORKFLOW.md").write_text("---\npolling: {interval_ms: 1}\n---\ncwd")
    other = tmp_path / "elsewhere.md"
    other.write_text("---\npolling: {interval_ms: 2}\n---\nexplicit")
    monkeypatch.chdir(tmp_path)
    assert load_workflow(resolve_workflow_path(other)).definition.prompt_template == "explicit"


def test_cwd_default_is_workflow_md(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "WORKFLOW.md").write_text("from cwd")
    monkeypatch.chdir(tmp_path)
    assert resolve_workflow_path(None) == tmp_path / "WORKFLOW.md"
    assert resolve_workflow_path("") == tmp_path / "WORKFLOW.md"
    assert load_workflow(resolve_workflow_path(None)).definition.prompt_template == "from cwd"
    assert resolve_workflow_path(None, cwd="/srv") == Path("/srv/WORKFLOW.md")


def test_load_records_fingerprint_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text(GOOD)
    loaded = load_workflow(path)
    assert loaded.sha256 == hashlib.sha256(GOOD.encode()).hexdigest()
    assert loaded.mtime_ns == path.stat().st_mtime_ns
    assert loaded.size == len(GOOD.encode())
    assert loaded.definition.config["tracker"] == {"kind": "memory"}
    assert loaded.directory == tmp_path


def test_missing_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError) as info:
        load_workflow(tmp_path / "nope.md")
    assert info.value.error_code == "missing_workflow_file"


def test_directory_is_not_a_workflow_file(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError) as info:
        load_workflow(tmp_path)
    assert info.value.error_code == "missing_workflow_file"


def test_parse_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text("---\n- a list\n---\n")
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    assert info.value.error_code == "workflow_front_matter_not_a_map"
    assert str(path) in info.value.message


def test_watcher_refuses_an_invalid_file_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text("---\nhooks: {timeout_ms: 0}\n---\n")
    with pytest.raises(ConfigError):
        WorkflowWatcher(path, to_config)


def test_change_is_detected_and_reapplied(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text(GOOD)
    watcher = WorkflowWatcher(path, to_config)
    assert watcher.poll().change is Change.UNCHANGED
    write(path, GOOD.replace("1000", "2500").replace("Hello", "Hi"))
    result = watcher.poll()
    assert result.change is Change.RELOADED
    assert result.current.value.polling.interval_ms == 2500
    assert result.current.workflow.definition.prompt_template == "Hi {{ issue.title }}"
    assert result.error is None
    assert watcher.poll().change is Change.UNCHANGED


def test_identical_rewrite_is_not_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text(GOOD)
    watcher = WorkflowWatcher(path, to_config)
    write(path, GOOD)
    assert watcher.poll().change is Change.UNCHANGED
    assert watcher.poll(force=True).change is Change.UNCHANGED


def test_atomic_replace_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text(GOOD)
    watcher = WorkflowWatcher(path, to_config)
    tmp = tmp_path / ".WORKFLOW.md.new"
    tmp.write_text(GOOD.replace("memory", "linear"))
    os.replace(tmp, path)
    result = watcher.poll()
    assert result.change is Change.RELOADED
    assert result.current.value.tracker.kind == "linear"


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ("---\ntracker: [oops\n---\n", "workflow_parse_error"),
        ("---\n- not a map\n---\n", "workflow_front_matter_not_a_map"),
        ("---\nagent: {max_turns: 0}\n---\n", "invalid_config"),
    ],
)
def test_bad_reload_keeps_last_known_good_and_reports(tmp_path: Path, bad: str, code: str) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text(GOOD)
    watcher = WorkflowWatcher(path, to_config)
    good = watcher.current
    write(path, bad)
    failed = watcher.poll()
    assert failed.change is Change.FAILED
    assert failed.error is not None and failed.error.error_code == code
    assert failed.current == good
    assert failed.current.value.polling.interval_ms == 1000
    # The error stays visible while the file stays bad, without being re-announced.
    again = watcher.poll(force=True)
    assert again.change is Change.UNCHANGED
    assert again.error is not None and again.error.error_code == code
    assert again.error == watcher.error
    watcher_state: WorkflowWatcher[ServiceConfig] = watcher
    write(path, GOOD.replace("1000", "3000"))
    fixed = watcher.poll()
    assert fixed.change is Change.RELOADED
    assert fixed.error is None and watcher_state.error is None
    assert fixed.current.value.polling.interval_ms == 3000


def test_reverting_a_bad_edit_clears_the_error(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text(GOOD)
    watcher = WorkflowWatcher(path, to_config)
    write(path, "---\n[\n---\n")
    assert watcher.poll().change is Change.FAILED
    write(path, GOOD)
    result = watcher.poll()
    assert result.change is Change.RELOADED
    assert result.error is None


def test_deleted_file_keeps_last_good_until_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text(GOOD)
    watcher = WorkflowWatcher(path, to_config)
    path.unlink()
    gone = watcher.poll()
    assert gone.change is Change.FAILED
    assert gone.error is not None and gone.error.error_code == "missing_workflow_file"
    assert gone.current.value.tracker.kind == "memory"
    assert watcher.poll().change is Change.UNCHANGED
    path.write_text(GOOD.replace("memory", "github"))
    back = watcher.poll()
    assert back.change is Change.RELOADED
    assert back.current.value.tracker.kind == "github"


def test_a_crashing_build_is_contained(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text("first")

    def build(loaded: LoadedWorkflow) -> str:
        if "boom" in loaded.definition.prompt_template:
            raise KeyError("boom")
        return loaded.definition.prompt_template

    watcher = WorkflowWatcher(path, build)
    write(path, "boom")
    result = watcher.poll()
    assert result.change is Change.FAILED
    assert result.current.value == "first"
    assert result.error is not None and "KeyError" in result.error.message


def test_forced_polls_parse_and_build_only_new_bytes(tmp_path: Path) -> None:
    path = tmp_path / "WORKFLOW.md"
    path.write_text("one")
    built: list[str] = []

    def build(loaded: LoadedWorkflow) -> str:
        built.append(loaded.definition.prompt_template)
        if loaded.definition.prompt_template == "bad":
            raise ConfigError("bad value")
        return loaded.definition.prompt_template

    watcher = WorkflowWatcher(path, build)
    for _ in range(3):
        assert watcher.poll(force=True).change is Change.UNCHANGED
    write(path, "bad")
    assert watcher.poll(force=True).change is Change.FAILED
    for _ in range(3):
        assert watcher.poll(force=True).change is Change.UNCHANGED
    write(path, "two")
    assert watcher.poll(force=True).change is Change.RELOADED
    assert built == ["one", "bad", "two"]
