"""GitLab, Jira and Asana boards for the suite, and deliveries signed as each provider signs
them (written from the providers' public webhook documentation). Every payload claims a
state the board does not have: the tracker must go by what it fetches."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

from tests.dispatcher.suite_tree import SuiteTree
from tests.tracker.fake_asana import PROJECT as ASANA_PROJECT
from tests.tracker.fake_asana import TOKEN as ASANA_API_TOKEN
from tests.tracker.fake_asana import WORKSPACE, FakeAsana
from tests.tracker.fake_gitlab import PROJECT as GL_PROJECT
from tests.tracker.fake_gitlab import PROJECT_ID as GL_PROJECT_ID
from tests.tracker.fake_gitlab import TOKEN as GL_API_TOKEN
from tests.tracker.fake_gitlab import FakeGitLab
from tests.tracker.fake_jira import CREDENTIAL as JIRA_CREDENTIAL
from tests.tracker.fake_jira import FakeJira
from tests.webhook.harness import (
    ASANA_ENROL,
    GITLAB_SIGNING_KEY,
    GITLAB_TOKEN,
    JIRA_SECRET,
    make_tree,
    sign,
)

ASANA_HOOK_SECRET = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81"

GITLAB_TRACKER = """tracker:
  kind: gitlab
  provider:
    endpoint: {endpoint}
    project: {project}
    api_key: $GITLAB_TOKEN
    identifier_prefix: GL
    blockers: none
    state_labels: {{Todo: 'status::todo', Human Review: 'status::review'}}
    tool_states: [Human Review]
  active_states: [Todo]
  terminal_states: [Closed]
"""
JIRA_TRACKER = """tracker:
  kind: jira
  provider:
    site: {endpoint}
    project: ENG
    api_key: $JIRA_API_TOKEN
    tool_states: [Human Review]
  active_states: [In Progress]
  terminal_states: [Done]
"""
ASANA_TRACKER = """tracker:
  kind: asana
  provider:
    endpoint: {endpoint}/api/1.0
    workspace: '{workspace}'
    project: '{project}'
    api_key: $ASANA_TOKEN
    identifier_prefix: AS
    tool_states: [Review]
  active_states: [Doing]
  terminal_states: [Done]
"""


def gitlab_tree(base: Path, fake: FakeGitLab, *, poll_ms: int) -> SuiteTree:
    tracker = GITLAB_TRACKER.format(endpoint=fake.base_url, project=GL_PROJECT)
    return make_tree(base, tracker, {"GITLAB_TOKEN": GL_API_TOKEN}, poll_ms=poll_ms)


def jira_tree(base: Path, fake: FakeJira, *, poll_ms: int) -> SuiteTree:
    tracker = JIRA_TRACKER.format(endpoint=fake.base_url)
    return make_tree(base, tracker, {"JIRA_API_TOKEN": JIRA_CREDENTIAL}, poll_ms=poll_ms)


def asana_tree(base: Path, fake: FakeAsana, *, poll_ms: int) -> SuiteTree:
    tracker = ASANA_TRACKER.format(endpoint=fake.base_url, workspace=WORKSPACE,
                                   project=ASANA_PROJECT)  # fmt: skip
    return make_tree(base, tracker, {"ASANA_TOKEN": ASANA_API_TOKEN}, poll_ms=poll_ms)


def gitlab_delivery(
    iid: int, *, token: bytes = GITLAB_TOKEN, key: bytes = GITLAB_SIGNING_KEY,
    kind: str = "issue", path: str = GL_PROJECT, stamp: int | None = None,
    delivery: str | None = None,
) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    """An issue event with both the secret token and the Standard Webhooks signature."""
    project = {"id": GL_PROJECT_ID, "path_with_namespace": path}
    payload: dict[str, Any] = {
        "object_kind": kind,
        "event_type": kind,
        "project": project,
        "object_attributes": {"iid": iid, "state": "closed", "action": "update"},
    }
    body = json.dumps(payload).encode()
    wid = delivery or str(uuid.uuid4())
    sent = str(int(time.time()) if stamp is None else stamp)
    mac = hmac.new(key, f"{wid}.{sent}.".encode() + body, hashlib.sha256).digest()
    return body, {
        "X-Gitlab-Event": "Issue Hook",
        "X-Gitlab-Token": token.decode(),
        "Idempotency-Key": wid,
        "webhook-id": wid,
        "webhook-timestamp": sent,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }


def jira_delivery(
    issue: dict[str, Any], *, key: str | None = None, secret: bytes = JIRA_SECRET,
    event: str = "jira:issue_updated", stamp_ms: int | None = None,
    delivery: str | None = None, pad: int = 0,
) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    payload: dict[str, Any] = {
        "timestamp": int(time.time() * 1000) if stamp_ms is None else stamp_ms,
        "webhookEvent": event,
        "issue": {"id": issue["id"], "key": key or issue["key"],
                  "fields": {"status": {"name": "Done"}}},
    }  # fmt: skip
    if pad:
        payload["padding"] = "x" * pad
    body = json.dumps(payload).encode()
    return body, {
        "X-Hub-Signature": f"sha256={sign(secret, body)}",
        "X-Atlassian-Webhook-Identifier": delivery or str(uuid.uuid4().int % 10**12),
        "X-Atlassian-Webhook-Flow": "Primary",
        "Content-Type": "application/json",
    }


def asana_path(token: str = ASANA_ENROL) -> str:
    return f"/hooks/asana?token={token}"


def asana_handshake(secret: str = ASANA_HOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    return b"", {"X-Hook-Secret": secret}


def asana_delivery(
    *gids: str, secret: str = ASANA_HOOK_SECRET, age_s: float = 0.0, story: bool = False
) -> tuple[bytes, dict[str, str]]:
    """Events on tasks (or, with ``story``, comments on them), as a webhook on the project
    sends them."""
    when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=age_s)
    stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    events = []
    for gid in gids:
        task = {"gid": gid, "resource_type": "task", "name": "claims to be done"}
        if story:
            resource = {"gid": "1600000000000001", "resource_type": "story"}
            events.append({"action": "added", "created_at": stamp, "resource": resource,
                           "parent": task, "user": {"gid": "1"}})  # fmt: skip
        else:
            parent = {"gid": ASANA_PROJECT, "resource_type": "project"}
            events.append({"action": "changed", "created_at": stamp, "resource": task,
                           "parent": parent, "user": {"gid": "1"}})  # fmt: skip
    body = json.dumps({"events": events}).encode()
    return body, {
        "X-Hook-Signature": sign(secret.encode(), body),
        "Content-Type": "application/json",
    }
