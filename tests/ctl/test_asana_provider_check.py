"""`symphonyctl workflow check` and `doctor` on a ``kind: asana`` workflow: the provider block
is checked offline by the adapter's own parser, with typed errors, and the token is never read
or printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ctl.test_doctor import Host, host, system_users  # noqa: F401 (fixtures)
from tests.ctl.test_workflow_cmd import ctl

WORKFLOW = """---
tracker:
  kind: asana
  provider:
{provider}workspace:
  root: {root}/ws
codex:
  command: {agent} app-server
---
Work on {{{{ issue.identifier }}}}.
"""
IDS = "    workspace: '1100000000000001'\n    project: '1200000000000002'\n"
GOOD = (
    IDS + "    api_key: $ASANA_TOKEN\n"
    "    section_states: {Todo: To do, In Progress: Doing, Review: Review}\n"
    "    tool_states: [Review, Done]\n    endpoint: $ASANA_URL\n"
)


def write(root: Path, provider: str, agent: str = "/bin/true") -> Path:
    path = root / "WORKFLOW.md"
    path.write_text(WORKFLOW.format(provider=provider, root=root, agent=agent))
    return path


def test_check_accepts_a_good_block_without_the_token(tmp_path: Path) -> None:
    wf = write(tmp_path, GOOD)
    result = ctl("check", str(wf), cwd=tmp_path, env={"ASANA_URL": "https://asana.example/api/1.0"})
    assert result.returncode == 0, result.stderr
    assert "tracker asana" in result.stdout


@pytest.mark.parametrize(
    ("provider", "needle"),
    [
        (IDS + "    projct: '12'\n", "unknown tracker.provider key"),
        ("    workspace: '1100000000000001'\n    project: my-board\n", "project's gid"),
        ("    project: '1200000000000002'\n", "workspace's gid"),
        (IDS + "    api_key: 2/LITERALSECRET\n", "literal value"),
        (IDS + "    endpoint: http://asana.example/api/1.0\n", "https URL"),
        (IDS + "    section_states: [To do]\n", "section_states must map"),
        (IDS + "    section_states: {A: X}\n    tool_states: [B]\n", "tool_states"),
        (IDS + "    endpoint: $ASANA_URL\n", "https URL"),  # $ASANA_URL=ftp://...
    ],
)
def test_check_refuses_a_bad_block_with_a_typed_error(
    tmp_path: Path, provider: str, needle: str
) -> None:
    wf = write(tmp_path, provider)
    result = ctl("check", str(wf), cwd=tmp_path, env={"ASANA_URL": "ftp://asana.example"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid_tracker_config: "), result.stderr
    assert needle in result.stderr and "LITERALSECRET" not in result.stderr


@pytest.mark.root
def test_doctor_checks_the_asana_block_and_its_credential(host: Host) -> None:  # noqa: F811
    host.bind_all()
    write(host.root, IDS + "    projct: typo\n", str(host.agent))
    code, checks = host.checks()
    assert code == 1 and checks["workflow"]["status"] == "fail"
    assert "invalid_tracker_config" in checks["workflow"]["detail"]

    write(host.root, GOOD.replace("$ASANA_URL", "https://asana.example/api/1.0"), str(host.agent))
    code, checks = host.checks()
    assert checks["workflow"]["status"] == "ok"
    assert (
        checks["credential"]["status"] == "warn"
        and "$ASANA_TOKEN" in (checks["credential"]["detail"])
    )
    token = host.creds / "tracker"
    token.write_text("2/1200000000000001/SUPERSECRET")
    token.chmod(0o600)
    out = host.doctor()
    assert out.returncode == 0, out.stdout
    assert "ok   credential:" in out.stdout and "SUPERSECRET" not in out.stdout + out.stderr
