"""The suite on a GitHub board (a fake GitHub on loopback) with symphony-webhook in front.

``SuiteTree`` runs audit, tracker, launcher and dispatcher as processes; here the tracker also
binds its hint socket (``--webhook-socket``) and ``python -m symphonyd.webhook`` listens on a
free loopback port with every provider's credential from files (``--secret-file``) and a
state directory for Asana's handshake secret (``--state-dir``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.dispatcher.suite_tree import REPO, SuiteTree
from tests.tracker.fake_github import REPO as GH_REPO
from tests.tracker.fake_github import TOKEN, FakeGitHub
from tests.tracker.fake_linear import TOKEN as LINEAR_TOKEN
from tests.tracker.fakeserver import FakeServer

GITHUB_SECRET = b"gh-webhook-secret-0123456789abcdef"
LINEAR_SECRET = b"linear-webhook-secret-0123456789ab"
GITLAB_TOKEN = b"gitlab-webhook-token-0123456789abcd"
GITLAB_SIGNING_KEY = bytes(range(32))
GITLAB_SIGNING = b"whsec_" + base64.b64encode(GITLAB_SIGNING_KEY)
JIRA_SECRET = b"jira-webhook-secret-0123456789abcd"
ASANA_ENROL = "asana-enrolment-token-0123456789ab"
SECRETS = {
    "github": GITHUB_SECRET,
    "linear": LINEAR_SECRET,
    "gitlab": GITLAB_TOKEN,
    "gitlab_signing": GITLAB_SIGNING,
    "jira": JIRA_SECRET,
    "asana": ASANA_ENROL.encode(),
}
GITHUB_TRACKER = """tracker:
  kind: github
  provider:
    endpoint: {endpoint}
    repository: {repo}
    identifier_prefix: GH
    state_labels: [Todo, Human Review]
    tool_states: [Human Review]
  active_states: [Todo]
  terminal_states: [Closed]
"""
LINEAR_TRACKER = """tracker:
  kind: linear
  provider:
    endpoint: {endpoint}/graphql
    api_key: $LINEAR_API_KEY
    project_slug: symph
    tool_states: [Human Review]
  active_states: [Todo]
  terminal_states: [Done]
"""
WORKFLOW = """---
{tracker}polling:
  interval_ms: {poll_ms}
workspace:
  root: {root}/ignored
agent:
  max_concurrent_agents: 10
  max_turns: 1
codex:
  command: exec {agent}
  approval_policy: never
---
Work on {{{{ issue.identifier }}}}. Hand it off when done.
"""


def github_tree(base: Path, fake: FakeGitHub, *, poll_ms: int) -> SuiteTree:
    tracker = GITHUB_TRACKER.format(endpoint=fake.base_url, repo=GH_REPO)
    return make_tree(base, tracker, {"GITHUB_TOKEN": TOKEN}, poll_ms=poll_ms)


def linear_tree(base: Path, fake: FakeServer, *, poll_ms: int) -> SuiteTree:
    tracker = LINEAR_TRACKER.format(endpoint=fake.base_url)
    return make_tree(base, tracker, {"LINEAR_API_KEY": LINEAR_TOKEN}, poll_ms=poll_ms)


def make_tree(base: Path, tracker: str, env: dict[str, str], *, poll_ms: int) -> SuiteTree:
    tree = SuiteTree(base, poll_ms=poll_ms)
    (base / "WORKFLOW.md").write_text(
        WORKFLOW.format(tracker=tracker, poll_ms=poll_ms, root=base,
                        agent=REPO / "bench" / "data" / "stamped_zero_work.sh")
    )  # fmt: skip
    tree.env.update(env)
    tree.extra_args["audit"] = ["--listen", f"webhook={tree.run / 'audit-webhook.sock'}"]
    tree.extra_args["tracker"] = ["--webhook-socket", str(tree.run / "tracker-webhook.sock"),
                                  "--webhook-uid", str(os.getuid())]  # fmt: skip
    return tree


class Receiver:
    """``python -m symphonyd.webhook`` on 127.0.0.1 (a port the kernel picks)."""

    def __init__(self, tree: SuiteTree) -> None:
        self.tree = tree
        self.log_path = tree.base / "webhook.log"
        self.state_dir = tree.base / "webhook-state"
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self) -> None:
        args = ["--state-dir", str(self.state_dir)]
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        for name, value in SECRETS.items():
            path = self.tree.base / f"{name}.secret"
            path.write_bytes(value + b"\n")
            args += ["--secret-file", f"{name}={path}"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "symphonyd.webhook", "--listen", "127.0.0.1:0",
                 "--host-config", str(self.tree.base / "symphonyd.toml"),
                 "--tracker-socket", str(self.tree.run / "tracker-webhook.sock"),
                 "--audit-socket", str(self.tree.run / "audit-webhook.sock"), *args],
                env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log, stderr=log,
            )  # fmt: skip
        self.tree.wait("the receiver to listen", self._listening)

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"webhook exited: {self.log()}")
        match = re.search(r"event=http_listen .*port=(\d+)", self.log())
        if match:
            self.base = f"http://127.0.0.1:{match.group(1)}"
        return match is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(60)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.base + path, content=body, headers=headers, timeout=30)

    def audit_records(self) -> list[dict[str, Any]]:
        """The ``webhook_delivery`` records in the tree's audit log (``symphonyctl audit``)."""
        shown = subprocess.run(
            [sys.executable, "-m", "symphonyd.ctl", "audit", "show", "--dir",
             str(self.tree.audit), "--type", "webhook_delivery", "--json"],
            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
            timeout=120, check=True,
        )  # fmt: skip
        return [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]

    def metrics(self) -> dict[str, int]:
        text = httpx.get(self.base + "/metrics", timeout=30).text
        found = re.findall(r'provider="(\w+)",outcome="(\w+)"\} (\d+)', text)
        return {f"{p}:{o}": int(n) for p, o, n in found if int(n)}


@contextlib.contextmanager
def running(tree: SuiteTree) -> Iterator[Receiver]:
    """The four daemons and the receiver, once the dispatcher follows tracker events."""
    receiver = Receiver(tree)
    try:
        tree.start()
        receiver.start()
        tree.wait("the dispatcher to subscribe to tracker events", lambda: subscribed(tree))
        yield receiver
    finally:
        receiver.kill()
        tree.stop()


def subscribed(tree: SuiteTree) -> bool:
    log = tree.log("dispatcher")
    return "event=tracker_events" in log and "outcome=subscribed" in log


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def github_delivery(
    number: int, *, secret: bytes = GITHUB_SECRET, delivery: str | None = None,
    event: str = "issues", repo: str = GH_REPO, pad: int = 0,
) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    """A signed GitHub ``issues`` delivery; the payload's state claims are deliberately
    wrong (``closed``): the tracker must go by what it fetches."""
    payload: dict[str, Any] = {
        "action": "labeled",
        "issue": {"number": number, "state": "closed", "labels": []},
        "repository": {"full_name": repo},
    }
    if pad:
        payload["padding"] = "x" * pad
    body = json.dumps(payload).encode()
    return body, {
        "X-Hub-Signature-256": f"sha256={sign(secret, body)}",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Event": event,
        "Content-Type": "application/json",
    }


def linear_delivery(
    issue_id: str, *, stamp_ms: int, secret: bytes = LINEAR_SECRET, delivery: str | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {"action": "update", "type": "Issue", "data": {"id": issue_id},
         "webhookTimestamp": stamp_ms}
    ).encode()  # fmt: skip
    return body, {
        "Linear-Signature": sign(secret, body),
        "Linear-Delivery": delivery or str(uuid.uuid4()),
        "Linear-Event": "Issue",
        "Content-Type": "application/json",
    }
