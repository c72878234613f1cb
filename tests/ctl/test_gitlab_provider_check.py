"""`symphonyctl workflow check` and `doctor` on a ``kind: gitlab`` workflow: the provider block
is checked offline by the adapter's own parser, with typed errors, and the token is never read
or printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ctl.test_doctor import Host, host, system_users  # noqa: F401 (fixtures)
from tests.ctl.test_workflow_cmd import ctl

WORKFLOW = """---
tracker:
  kind: gitlab
  provider:
{provider}workspace:
  root: {root}/ws
codex:
  command: {agent} app-server
---
Work on {{{{ issue.identifier }}}}.
"""
GOOD = (
    "    project: acme/platform/widgets\n    api_key: $GITLAB_TOKEN\n"
    "    state_labels: {Todo: 'status::todo', Review: 'status::review'}\n"
    "    tool_states: [Review, Closed]\n    endpoint: $GL_URL\n"
)


def write(root: Path, provider: str, agent: str = "/bin/true") -> Path:
    path = root / "WORKFLOW.md"
    path.write_text(WORKFLOW.format(provider=provider, root=root, agent=agent))
    return path


def test_check_accepts_a_good_block_without_the_token(tmp_path: Path) -> None:
    wf = write(tmp_path, GOOD)
    result = ctl("check", str(wf), cwd=tmp_path, env={"GL_URL": "https://gitlab.example.org"})
    assert result.returncode == 0, result.stderr
    assert "tracker gitlab" in result.stdout


@pytest.mark.parametrize(
    ("provider", "needle"),
    [
        ("    projct: acme/widgets\n", "unknown tracker.provider key"),
        ("    project: ../../etc\n", "project's full path"),
        ("    project: a/b\n    api_key: glpat-LITERALSECRET\n", "literal value"),
        ("    project: a/b\n    endpoint: http://gitlab.example.org\n", "https URL"),
        ("    project: a/b\n    state_labels: {Todo: 'a,b'}\n", "without commas"),
        ("    project: a/b\n    tool_states: [Elsewhere]\n", "tool_states"),
        ("    project: a/b\n    endpoint: $GL_URL\n", "https URL"),  # $GL_URL=ftp://...
    ],
)
def test_check_refuses_a_bad_block_with_a_typed_error(
    tmp_path: Path, provider: str, needle: str
) -> None:
    wf = write(tmp_path, provider)
    result = ctl("check", str(wf), cwd=tmp_path, env={"GL_URL": "ftp://gitlab.example.org"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid_tracker_config: "), result.stderr
    assert needle in result.stderr and "LITERALSECRET" not in result.stderr


@pytest.mark.root
def test_doctor_checks_the_gitlab_block_and_its_credential(host: Host) -> None:  # noqa: F811
    host.bind_all()
    write(host.root, "    project: acme/widgets\n    projct: typo\n", str(host.agent))
    code, checks = host.checks()
    assert code == 1 and checks["workflow"]["status"] == "fail"
    assert "invalid_tracker_config" in checks["workflow"]["detail"]

    write(host.root, GOOD.replace("$GL_URL", "https://gitlab.example.org"), str(host.agent))
    code, checks = host.checks()
    assert checks["workflow"]["status"] == "ok"
    assert (
        checks["credential"]["status"] == "warn"
        and "$GITLAB_TOKEN" in (checks["credential"]["detail"])
    )
    token = host.creds / "tracker"
    token.write_text("glpat-SUPERSECRET")
    token.chmod(0o600)
    out = host.doctor()
    assert out.returncode == 0, out.stdout
    assert "ok   credential:" in out.stdout and "SUPERSECRET" not in out.stdout + out.stderr
