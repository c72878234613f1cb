"""The GitLab phase of the end-to-end suite (issue 18), in the suite's own container.

After the local-files issues are done, the operator points the running suite at a GitLab
instance on the same host: here the tests' fake GitLab server (tests/tracker/fake_gitlab.py)
on 127.0.0.1 inside the container. The tracker unit denies loopback (``IPAddressDeny=
localhost``), so, as docs/trackers/gitlab.md tells operators of an instance on the same host,
a drop-in allows it; the token goes into the tracker credential; WORKFLOW.md switches to
``kind: gitlab``. One issue filed on the fake is dispatched by the real suite, the real agent
works on it and hands it off through ``tracker_move``, which the fake sees as its
``status::review`` label, and the token never reaches the agent's environment.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devtools.nspawn import Container
from tests.tracker.fake_gitlab import PROJECT, TOKEN

REPO = Path(__file__).resolve().parents[2]
REPO_FILES = (
    "tests/__init__.py",
    "tests/tracker/__init__.py",
    "tests/tracker/fakeserver.py",
    "tests/tracker/fake_gitlab.py",
    "tests/e2e/__init__.py",
    "tests/e2e/fake_gitlab_serve.py",
)
PORT = 18090
API = f"http://127.0.0.1:{PORT}/api/v4/projects/{quote(PROJECT, safe='')}/issues"
IDENTIFIER = "widgets-1"
WORKFLOW = "/etc/symphony/WORKFLOW.md"
TRACKER_BLOCK = f"""\
tracker:
  kind: gitlab
  provider:
    endpoint: http://127.0.0.1:{PORT}
    project: {PROJECT}
    api_key: $GITLAB_TOKEN
    state_labels:
      Todo: status::todo
      In Progress: status::in-progress
      Human Review: status::review
    tool_states: [Human Review]
  active_states: [Todo, In Progress]
  terminal_states: [Closed]
"""
ALLOW_LOOPBACK = """\
# A GitLab instance on this host: allow the tracker to reach loopback (docs/trackers/gitlab.md).
[Service]
IPAddressAllow=localhost
"""
# GitLab's REST API from inside the container, as a client of the instance would call it.
CALL = """\
import json, sys, urllib.request as u
method, url, token, body = sys.argv[1:5]
req = u.Request(url, method=method, data=body.encode() or None,
                headers={"PRIVATE-TOKEN": token, "Content-Type": "application/json"})
print(u.urlopen(req, timeout=20).read().decode())
"""


def api(c: Container, method: str, url: str, body: Any = None) -> Any:
    data = "" if body is None else json.dumps(body)
    out = c.run(["python3", "-c", CALL, method, url, TOKEN, data]).stdout
    return json.loads(out)


def start_fake(c: Container) -> None:
    for name in REPO_FILES:
        c.copy_in(REPO / name, f"/root/fake/{name}")
    c.run(
        [
            *("systemd-run", "--unit=e2e-fake-gitlab", "--property=WorkingDirectory=/root/fake"),
            *("python3", "-m", "tests.e2e.fake_gitlab_serve", str(PORT)),
        ]
    )
    _wait("the fake GitLab to answer", lambda: _answers(c), 60)


def _answers(c: Container) -> bool:
    probe = ["python3", "-c", CALL, "GET", f"{API}?per_page=1", TOKEN, ""]
    return c.run(probe, check=False).returncode == 0


def switch_to_gitlab(c: Container, fingerprint: Callable[[], str]) -> None:
    """Token, loopback allowance, WORKFLOW.md: what an operator changes, then the tracker
    restarts to load its new credential."""
    before = fingerprint()
    c.run(["install", "-m", "0600", "/dev/null", "/etc/symphony/credentials/tracker"])
    c.run(["tee", "/etc/symphony/credentials/tracker"], input=TOKEN + "\n")
    dropin = "/etc/systemd/system/symphony-tracker.service.d"
    c.run(["mkdir", "-p", dropin])
    c.run(["tee", f"{dropin}/gitlab-on-this-host.conf"], input=ALLOW_LOOPBACK)
    c.run(["systemctl", "daemon-reload"])
    allowed = c.run(["systemctl", "show", "-P", "IPAddressAllow", "symphony-tracker.service"])
    assert "127.0.0.0/8" in allowed.stdout, allowed.stdout
    workflow = c.run(["cat", WORKFLOW]).stdout
    workflow, count = re.subn(r"(?ms)^tracker:\n.*?(?=^polling:)", TRACKER_BLOCK, workflow)
    assert count == 1, workflow[:600]
    c.run(["tee", WORKFLOW], input=workflow)
    c.run(["systemctl", "restart", "symphony-tracker.service"])
    _wait("the gitlab workflow loaded", lambda: fingerprint() != before, 120)


def file_issue(c: Container) -> None:
    issue = api(
        c,
        "POST",
        API,
        {"title": "Say hello from GitLab", "description": "Write a greeting file.",
         "labels": "status::todo"},
    )  # fmt: skip
    assert issue["iid"] == 1 and issue["labels"] == ["status::todo"], issue


def labels(c: Container) -> list[str]:
    (issue,) = api(c, "GET", f"{API}?state=all&iids[]=1")
    return list(issue["labels"])


def check(c: Container, audit_types: set[str]) -> None:
    """After the fake shows the hand-off."""
    issue = api(c, "GET", f"{API}?state=all&iids[]=1")[0]
    assert issue["state"] == "opened" and issue["labels"] == ["status::review"], issue
    ws = f"/var/lib/symphony/workspaces/{IDENTIFIER}"
    assert "demo model" in c.run(["cat", f"{ws}/symphony-demo.md"]).stdout
    # The agent's environment (dumped by the hostile-issue scenario's command): no token.
    env_dump = c.run(["cat", f"{ws}/agent-env.txt"]).stdout
    assert TOKEN not in env_dump and "GITLAB_TOKEN" not in env_dump
    assert {"dispatch", "tool_call", "tracker_write", "run_finished"} <= audit_types, audit_types


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")
