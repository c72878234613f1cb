"""`symphonyctl workflow check` applies the adapter's own ``tracker.provider`` rules (jira)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ctl.test_workflow_cmd import ctl

JIRA = """---
tracker:
  kind: jira
  provider:
    site: https://acme.atlassian.net
    project: ENG
{extra}---
prompt
"""


def test_a_good_jira_block_passes_without_the_credential_at_hand(tmp_path: Path) -> None:
    (tmp_path / "WORKFLOW.md").write_text(JIRA.format(extra="    jql: labels = agent\n"))
    result = ctl("check", str(tmp_path / "WORKFLOW.md"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(tracker jira," in result.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("    projct: ENG\n", "unknown tracker.provider key"),
        ("    site: http://acme.atlassian.net\n", "must be an https URL"),
        ("    api_key: bot@example.com:ATATT3xLITERAL\n", "literal"),
        ("    jql: 'a = b) OR (c = d'\n", "balanced parentheses"),
        ("    page_size: 0\n", "page_size"),
    ],
)
def test_a_bad_jira_block_is_a_typed_error(tmp_path: Path, extra: str, needle: str) -> None:
    text = JIRA.format(extra=extra)
    if "site:" in extra:
        text = text.replace("    site: https://acme.atlassian.net\n", "")
    (tmp_path / "WORKFLOW.md").write_text(text)
    result = ctl("check", str(tmp_path / "WORKFLOW.md"), cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("error: invalid_tracker_config: "), result.stderr
    assert needle in result.stderr
    assert "ATATT3xLITERAL" not in result.stderr
