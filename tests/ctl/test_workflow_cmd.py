"""`symphonyctl workflow check|render`, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from symphonyd.core.prompt_guard import PREAMBLE

REPO = Path(__file__).resolve().parents[2]
GOOD = """---
tracker:
  kind: memory
  provider:
    token: $SYMPHONY_TEST_TOKEN
workspace:
  root: $SYMPHONY_TEST_WS
---
# {{ issue.identifier }}: {{ issue.title }}
{% for l in issue.labels %}- {{ l }}
{% endfor %}{% if attempt %}Attempt {{ attempt }}.{% else %}First run.{% endif %}
"""
ISSUE = {
    "id": "i-1",
    "identifier": "ABC-7",
    "title": "Title with {{ issue.id }} and {% raw %}",
    "state": "Todo",
    "dispatchable": True,
    "labels": ["bug", "ui"],
}


def ctl(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "symphonyd.ctl", "workflow", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    path = tmp_path / "WORKFLOW.md"
    path.write_text(GOOD)
    return path


def test_check_ok_with_explicit_path(workflow: Path, tmp_path: Path) -> None:
    result = ctl("check", str(workflow), cwd=tmp_path, env={"SYMPHONY_TEST_WS": "/srv/ws"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {workflow}")
    assert "tracker memory" in result.stdout and "/srv/ws" in result.stdout
    assert result.stderr == ""


def test_check_defaults_to_the_host_configs_workflow(workflow: Path, tmp_path: Path) -> None:
    # Not ./WORKFLOW.md (issue 22): the one the daemons load. More in test_cli_small.py.
    config = tmp_path / "symphonyd.toml"
    config.write_text(f'workflow = "{workflow}"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = ctl(
        "check", "--host-config", str(config), cwd=elsewhere, env={"SYMPHONY_TEST_WS": "/srv/ws"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ok: {workflow} ")


def test_check_missing_file(tmp_path: Path) -> None:
    result = ctl("check", str(tmp_path / "WORKFLOW.md"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: missing_workflow_file: ")
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("---\ntracker: [oops\n---\n", "workflow_parse_error"),
        ("---\n- a\n---\n", "workflow_front_matter_not_a_map"),
        ("---\ntracker: {kind: memory}\nhooks: {timeout_ms: -1}\n---\n", "invalid_config"),
        ("---\ntracker: {kind: trello}\n---\n", "unsupported_tracker_kind"),
        (
            "---\ntracker: {kind: memory}\nworker: {ssh_hosts: [w1]}\n---\n",
            "worker_hosts_unsupported",
        ),
        ("no front matter at all", "missing_tracker_kind"),
        ("---\ntracker: {kind: memory}\n---\n{{ issue.title | shout }}", "template_render_error"),
        ("---\ntracker: {kind: memory}\n---\n{% if %}", "template_parse_error"),
        ("---\ntracker: {kind: memory}\n---\n{% include 'x' %}", "template_parse_error"),
    ],
)
def test_check_reports_typed_errors(tmp_path: Path, text: str, code: str) -> None:
    (tmp_path / "WORKFLOW.md").write_text(text)
    result = ctl("check", str(tmp_path / "WORKFLOW.md"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {code}: "), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_check_reports_an_unset_path_variable(workflow: Path, tmp_path: Path) -> None:
    result = ctl("check", str(workflow), cwd=tmp_path)
    assert result.returncode == 2
    assert "SYMPHONY_TEST_WS" in result.stderr and "workspace.root" in result.stderr


def test_render_prints_the_prompt_with_hostile_text_literal(workflow: Path, tmp_path: Path) -> None:
    issue_file = tmp_path / "issue.json"
    issue_file.write_text(json.dumps(ISSUE))
    first = ctl("render", str(workflow), "--issue", str(issue_file), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # What the launcher sends: the preamble, then the title fenced as tracker data.
    assert first.stdout == (
        f"{PREAMBLE}\n# ABC-7: <untrusted-title>\nTitle with {{{{ issue.id }}}} and {{% raw %}}"
        "\n</untrusted-title>\n- bug\n- ui\nFirst run.\n"
    )
    retry = ctl("render", str(workflow), "--issue", str(issue_file), "--attempt", "3", cwd=tmp_path)
    assert retry.returncode == 0
    assert retry.stdout.endswith("Attempt 3.\n")


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("{not json", "invalid_input"),
        ('{"id": "x"}', "invalid_input"),
        ("[1, 2]", "invalid_input"),
        ("[" * 100000, "invalid_input"),
    ],
)
def test_render_refuses_bad_issue_json(
    workflow: Path, tmp_path: Path, content: str, code: str
) -> None:
    issue_file = tmp_path / "issue.json"
    issue_file.write_text(content)
    result = ctl("render", str(workflow), "--issue", str(issue_file), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {code}: ")
    assert "Traceback" not in result.stderr


def test_render_missing_issue_file(workflow: Path, tmp_path: Path) -> None:
    result = ctl("render", str(workflow), "--issue", str(tmp_path / "none.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid_input: cannot read issue file")


def test_render_template_error_is_typed(tmp_path: Path) -> None:
    (tmp_path / "WORKFLOW.md").write_text("{{ issue.nope }}")
    issue_file = tmp_path / "issue.json"
    issue_file.write_text(json.dumps(ISSUE))
    result = ctl("render", str(tmp_path / "WORKFLOW.md"), "--issue", str(issue_file), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: template_render_error: ")


def test_render_rejects_a_bad_attempt(workflow: Path, tmp_path: Path) -> None:
    result = ctl("render", str(workflow), "--issue", "x.json", "--attempt", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "attempt" in result.stderr
