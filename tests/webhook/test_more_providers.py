"""GitLab, Jira and Asana webhooks through the real receiver and the real tracker (issue 21).

As in test_receiver.py: ``python -m symphonyd.webhook`` in front of the four daemons, the
tracker on a fake provider polling once an hour, so only a delivery can explain a dispatch
after the first tick. A delivery that is forged, unsigned, replayed, stale, oversized, of an
unknown event or the wrong method gets its 4xx and an audit record and never reaches the
tracker (which logs every hint it serves before the receiver replies); a signed one starts
the named issue's agent.
"""

from __future__ import annotations

import stat
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from symphonyd.core.workspace_paths import workspace_key
from tests.dispatcher.suite_tree import SuiteTree
from tests.tracker.fake_asana import SECTION_GID, FakeAsana, asana_task, gid_of
from tests.tracker.fake_gitlab import FakeGitLab, gl_issue
from tests.tracker.fake_jira import FakeJira, jira_issue
from tests.webhook.deliveries import (
    ASANA_HOOK_SECRET,
    asana_delivery,
    asana_handshake,
    asana_path,
    asana_tree,
    gitlab_delivery,
    gitlab_tree,
    jira_delivery,
    jira_tree,
)
from tests.webhook.harness import ASANA_ENROL, JIRA_SECRET, Receiver, running, sign

HOUR_MS = 3_600_000
MIB = 1 << 20
Posted = tuple[bytes, dict[str, str]]


def refreshed(tree: SuiteTree) -> int:
    return tree.log("tracker").count("outcome=refreshed")


def expect(receiver: Receiver, path: str, cases: dict[str, tuple[Posted, int]]) -> None:
    for name, ((body, headers), status) in cases.items():
        reply = receiver.post(path, body, headers)
        assert reply.status_code == status, (name, reply.status_code, reply.text)


def audited(receiver: Receiver, tree: SuiteTree, provider: str, total: int) -> Counter[str]:
    """The outcomes of ``provider``'s ``webhook_delivery`` records, once ``total`` are in."""

    def records() -> list[str]:
        return [r["payload"]["outcome"] for r in receiver.audit_records()
                if r["payload"]["provider"] == provider]  # fmt: skip

    tree.wait(f"{total} audit records", lambda: len(records()) >= total)
    return Counter(records())


def unsigned(posted: Posted, *drop: str) -> Posted:
    body, headers = posted
    return body, {k: v for k, v in headers.items() if k not in drop}


def oversized(make: Callable[[], Posted]) -> Posted:
    return b"{" + b" " * (MIB + 1) + b"}", make()[1]


@pytest.mark.slow
def test_gitlab_token_and_signature_then_a_targeted_refresh(tmp_path: Path) -> None:
    with FakeGitLab([gl_issue(n, labels=("status::backlog",)) for n in (1, 2, 3)]) as fake:
        tree = gitlab_tree(tmp_path, fake, poll_ms=HOUR_MS)
        with running(tree) as receiver:
            fake.issues[1]["labels"] = ["status::todo"]  # issue 2 becomes Todo
            now = int(time.time())
            expect(receiver, "/hooks/gitlab", {
                "forged signature": (gitlab_delivery(2, key=b"k" * 32), 401),
                "wrong token": (gitlab_delivery(2, token=b"not-the-token-0123456789"), 401),
                "unsigned": (unsigned(gitlab_delivery(2), "X-Gitlab-Token",
                                      "webhook-signature"), 401),
                "no signature": (unsigned(gitlab_delivery(2), "webhook-signature"), 401),
                "stale": (gitlab_delivery(2, stamp=now - 600), 401),
                "oversized": (oversized(lambda: gitlab_delivery(2)), 413),
                "unknown event": (gitlab_delivery(2, kind="push"), 422),
            })  # fmt: skip
            assert httpx.get(receiver.base + "/hooks/gitlab").status_code == 405
            assert refreshed(tree) == 0 and tree.agent_started_ns("GL-2") is None
            # Verified, but another project: the tracker declines it.
            reply = receiver.post("/hooks/gitlab", *gitlab_delivery(2, path="acme/other"))
            assert reply.status_code == 202 and reply.json()["reason"] == "other_scope"

            body, headers = gitlab_delivery(2)
            reply = receiver.post("/hooks/gitlab", body, headers)
            assert reply.status_code == 202 and reply.json()["outcome"] == "accepted", reply.text
            tree.wait("GL-2's agent", lambda: tree.agent_started_ns("GL-2") is not None)
            assert receiver.post("/hooks/gitlab", body, headers).status_code == 409
            assert refreshed(tree) == 1
            assert tree.agent_started_ns("GL-1") is None and tree.agent_started_ns("GL-3") is None
            outcomes = audited(receiver, tree, "gitlab", 11)
            assert outcomes == {"bad_signature": 4, "replay": 2, "too_large": 1,
                                "unknown_event": 1, "not_allowed": 1, "ignored": 1,
                                "accepted": 1}, outcomes  # fmt: skip
            assert "provider=gitlab" in receiver.log() and "outcome=unknown_event" in receiver.log()


@pytest.mark.slow
def test_jira_signed_delivery_then_a_targeted_refresh(tmp_path: Path) -> None:
    issues = [jira_issue(n) for n in (1, 2, 3)]
    with FakeJira(issues) as fake:
        tree = jira_tree(tmp_path, fake, poll_ms=HOUR_MS)
        with running(tree) as receiver:
            progress = {"key": "indeterminate"}
            issues[1]["fields"]["status"] = {"name": "In Progress", "statusCategory": progress}
            two = issues[1]
            junk = b"{not json"
            _, junk_headers = jira_delivery(two)
            junk_headers["X-Hub-Signature"] = "sha256=" + sign(JIRA_SECRET, junk)
            expect(receiver, "/hooks/jira", {
                "forged": (jira_delivery(two, secret=b"wrong-secret-0123456789ab"), 401),
                "unsigned": (unsigned(jira_delivery(two), "X-Hub-Signature"), 401),
                "stale": (jira_delivery(two, stamp_ms=int(time.time() * 1000) - 2 * HOUR_MS),
                          401),
                "oversized": (jira_delivery(two, pad=MIB), 413),
                "malformed": ((junk, junk_headers), 400),
                "unknown event": (jira_delivery(two, event="project_created"), 422),
            })  # fmt: skip
            assert httpx.put(receiver.base + "/hooks/jira").status_code == 405
            assert refreshed(tree) == 0 and tree.agent_started_ns("ENG-2") is None
            reply = receiver.post("/hooks/jira", *jira_delivery(two, key="OPS-2"))
            assert reply.status_code == 202 and reply.json()["reason"] == "other_scope"

            # A comment event names the issue as well.
            body, headers = jira_delivery(two, event="comment_created")
            reply = receiver.post("/hooks/jira", body, headers)
            assert reply.status_code == 202 and reply.json()["outcome"] == "accepted", reply.text
            tree.wait("ENG-2's agent", lambda: tree.agent_started_ns("ENG-2") is not None)
            assert receiver.post("/hooks/jira", body, headers).status_code == 409
            assert refreshed(tree) == 1 and tree.agent_started_ns("ENG-1") is None
            outcomes = audited(receiver, tree, "jira", 10)
            assert outcomes == {"bad_signature": 2, "replay": 2, "too_large": 1, "malformed": 1,
                                "unknown_event": 1, "not_allowed": 1, "ignored": 1,
                                "accepted": 1}, outcomes  # fmt: skip


def asana_ws(gid: str) -> str:
    """The task's workspace directory (a long identifier gets a hashed key)."""
    return workspace_key(f"AS-{gid}")


def move(task: dict[str, object], section: str) -> None:
    task["memberships"] = [{"project": {"gid": "1200000000000002"},
                            "section": {"gid": SECTION_GID[section], "name": section}}]  # fmt: skip


@pytest.mark.slow
def test_asana_handshake_then_signed_events_then_a_targeted_refresh(tmp_path: Path) -> None:
    tasks = [asana_task(n) for n in (1, 2, 3)]
    with FakeAsana(tasks) as fake:
        tree = asana_tree(tmp_path, fake, poll_ms=HOUR_MS)
        with running(tree) as receiver:
            two, three = gid_of(2), gid_of(3)
            # Signed with the right secret, but no handshake has authorised it yet.
            assert receiver.post(asana_path(), *asana_delivery(two)).status_code == 401
            # A handshake must carry the enrolment token of the target URL.
            refused = receiver.post("/hooks/asana", *asana_handshake())
            assert refused.status_code == 401 and "X-Hook-Secret" not in refused.headers
            wrong = receiver.post(asana_path("not-the-token-0123456789"), *asana_handshake())
            assert wrong.status_code == 401
            saved = receiver.state_dir / "asana-hook-secret"
            assert not saved.exists()
            reply = receiver.post(asana_path(), *asana_handshake())
            assert reply.status_code == 200, reply.text
            assert reply.headers["X-Hook-Secret"] == ASANA_HOOK_SECRET
            assert saved.read_text().strip() == ASANA_HOOK_SECRET
            assert stat.S_IMODE(saved.stat().st_mode) == 0o600

            move(tasks[1], "Doing")
            heartbeat = asana_delivery()
            for _ in range(2):  # Asana's heartbeats are identical bodies: never a replay
                assert receiver.post(asana_path(), *heartbeat).status_code == 202
            junk = b"{not json"
            expect(receiver, asana_path(), {
                "forged": (asana_delivery(two, secret="f" * 64), 401),
                "unsigned": (unsigned(asana_delivery(two), "X-Hook-Signature"), 401),
                "stale": (asana_delivery(two, age_s=25 * 3600), 401),
                "oversized": (oversized(lambda: asana_delivery(two)), 413),
                "malformed": ((junk, {"X-Hook-Signature": sign(ASANA_HOOK_SECRET.encode(),
                                                               junk)}), 400),
            })  # fmt: skip
            no_token = receiver.post("/hooks/asana", *asana_delivery(two))
            assert no_token.status_code == 401
            assert httpx.get(receiver.base + asana_path()).status_code == 405
            assert refreshed(tree) == 0 and tree.agent_started_ns(asana_ws(two)) is None

            body, headers = asana_delivery(two, story=True)  # a comment on task 2
            reply = receiver.post(asana_path(), body, headers)
            assert reply.status_code == 202 and reply.json()["outcome"] == "accepted", reply.text
            tree.wait("task 2's agent", lambda: tree.agent_started_ns(asana_ws(two)) is not None)
            assert receiver.post(asana_path(), body, headers).status_code == 409
            assert refreshed(tree) == 1
            outcomes = audited(receiver, tree, "asana", 15)
            assert outcomes == {"bad_signature": 6, "enrolled": 1, "ignored": 2, "replay": 2,
                                "too_large": 1, "malformed": 1, "not_allowed": 1,
                                "accepted": 1}, outcomes  # fmt: skip
            assert ASANA_HOOK_SECRET not in receiver.log() and ASANA_ENROL not in receiver.log()

            # The secret survives a restart of the receiver (read back from the state dir).
            assert receiver.stop() == 0
            receiver.log_path = tmp_path / "webhook-restarted.log"
            receiver.start()
            move(tasks[2], "Doing")
            reply = receiver.post(asana_path(), *asana_delivery(three))
            assert reply.json()["outcome"] == "accepted", reply.text
            tree.wait("task 3's agent", lambda: tree.agent_started_ns(asana_ws(three)) is not None)
            assert tree.agent_started_ns(asana_ws(gid_of(1))) is None
