"""Webhooks (issue 21): a signed delivery starts the agent without waiting for the poll; a
forged, unsigned, replayed, oversized or malformed one has no effect.

Real processes throughout: ``python -m symphonyd.webhook`` in front of the four daemons, the
tracker on a fake GitHub (the outside world) and polling once an hour, so only an event can
explain a dispatch after the first tick. "No effect" is read where it would show: the
tracker logs every hint it serves (``source=webhook_github``) before it replies, and the
receiver replies only after the tracker did, so after a refused delivery's reply the count
of hints is final.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dispatcher.suite_tree import REPO, SuiteTree
from tests.tracker.fake_github import FakeGitHub, gh_issue
from tests.tracker.fake_linear import FakeLinear, linear_node
from tests.webhook.harness import (
    GITHUB_SECRET,
    LINEAR_SECRET,
    github_delivery,
    github_tree,
    linear_delivery,
    linear_tree,
    running,
    sign,
)

HOUR_MS = 3_600_000
MIB = 1 << 20


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub([gh_issue(n, labels=("Backlog",)) for n in (1, 2, 3)]) as srv:
        yield srv


def label(fake: FakeGitHub, number: int, name: str) -> None:
    (issue,) = [i for i in fake.issues if i["number"] == number]
    issue["labels"] = [{"name": name}]


def hints(tree: SuiteTree, outcome: str) -> int:
    return tree.log("tracker").count(f"outcome={outcome}")


@pytest.mark.slow
def test_signed_deliveries_dispatch_and_bad_ones_have_no_effect(
    tmp_path: Path, fake: FakeGitHub
) -> None:
    tree = github_tree(tmp_path, fake, poll_ms=HOUR_MS)
    with running(tree) as receiver:
        label(fake, 2, "Todo")  # the board changes; every delivery below names issue 2
        bad = {
            "forged": (github_delivery(2, secret=b"not-the-secret-0123456789"), 401),
            "unsigned": (github_delivery(2), 401),
            "oversized": (github_delivery(2, pad=MIB + 1), 413),
            "body swapped": ((b"{not json", github_delivery(2)[1]), 401),
        }
        body, headers = bad["unsigned"][0]
        del headers["X-Hub-Signature-256"]
        for name, ((body, headers), status) in bad.items():
            reply = receiver.post("/hooks/github", body, headers)
            assert reply.status_code == status, (name, reply.text)
        # A chunked body declares no length: it is counted while read, and cut at the cap.
        chunked = httpx.post(receiver.base + "/hooks/github", headers=headers, timeout=30,
                             content=iter([b" " * MIB, b" " * 16]))  # fmt: skip
        assert chunked.status_code == 413, chunked.text
        # Signed but not JSON: the signature passes, the parse refuses it.
        junk = b"{not json"
        _, headers = github_delivery(2)
        headers["X-Hub-Signature-256"] = "sha256=" + sign(GITHUB_SECRET, junk)
        assert receiver.post("/hooks/github", junk, headers).status_code == 400
        body, headers = github_delivery(2)
        assert receiver.post("/hooks/bitbucket", body, headers).status_code == 404
        assert receiver.post("/elsewhere", body, headers).status_code == 404
        assert httpx.get(receiver.base + "/hooks/github", headers=headers).status_code == 405
        assert hints(tree, "refreshed") == 0  # nothing reached the tracker
        assert tree.agent_started_ns("GH-2") is None
        # A delivery for another repository is verified, then not refreshed by the tracker.
        reply = receiver.post("/hooks/github", *github_delivery(2, repo="acme/other"))
        assert reply.status_code == 202 and reply.json()["reason"] == "other_scope"
        # ... and one for an issue the repository does not have: fetched, not found.
        reply = receiver.post("/hooks/github", *github_delivery(99))
        assert reply.status_code == 202 and reply.json()["reason"] == "not_found"

        # The signed delivery: the agent starts although the next poll is an hour away.
        body, headers = github_delivery(2)
        reply = receiver.post("/hooks/github", body, headers)
        assert reply.status_code == 202 and reply.json()["outcome"] == "accepted", reply.text
        tree.wait("GH-2's agent", lambda: tree.agent_started_ns("GH-2") is not None)
        assert hints(tree, "refreshed") == 1
        # The same delivery again: refused before the tracker hears of it.
        again = receiver.post("/hooks/github", body, headers)
        assert again.status_code == 409, again.text
        assert hints(tree, "refreshed") == 1
        # A second change, a second delivery: the stream still dispatches.
        label(fake, 3, "Todo")
        reply = receiver.post("/hooks/github", *github_delivery(3))
        assert reply.json()["outcome"] == "accepted"
        tree.wait("GH-3's agent", lambda: tree.agent_started_ns("GH-3") is not None)
        assert hints(tree, "refreshed") == 2
        events = tree.snapshot().tracker_events
        assert events is not None and events.received.get("webhook_github") == 2, events

        # Linear's signature and timestamp window (this board is GitHub's, so a verified
        # Linear delivery is passed on and the tracker declines it).
        now_ms = int(time.time() * 1000)
        ok = receiver.post("/hooks/linear", *linear_delivery("lin-1", stamp_ms=now_ms))
        assert ok.status_code == 202 and ok.json()["reason"] == "other_provider", ok.text
        stale = linear_delivery("lin-1", stamp_ms=now_ms - 120_000)
        assert receiver.post("/hooks/linear", *stale).status_code == 401
        forged = linear_delivery("lin-1", stamp_ms=now_ms, secret=b"wrong-secret-0123456789")
        assert receiver.post("/hooks/linear", *forged).status_code == 401
        # Events the receiver does not use: GitHub's ping is answered, anything else subscribed
        # (a push, a Linear project) is a 422 the provider shows as a failed delivery.
        assert receiver.post("/hooks/github", *github_delivery(2, event="ping")).status_code == 202
        push = receiver.post("/hooks/github", *github_delivery(2, event="push"))
        assert (push.status_code, push.json()["error"]) == (422, "unknown_event"), push.text
        project = json.dumps({"type": "Project", "data": {"id": "p1"}, "webhookTimestamp": now_ms})
        signed = {
            "Linear-Signature": sign(LINEAR_SECRET, project.encode()),
            "Linear-Delivery": str(uuid.uuid4()),
        }
        assert receiver.post("/hooks/linear", project.encode(), signed).status_code == 422
        assert hints(tree, "ignored") == 3  # other_scope, not_found, other_provider only

        assert receiver.metrics() == {
            "github:accepted": 2,
            "github:bad_signature": 3,  # forged, unsigned, body swapped
            "github:too_large": 2,
            "github:malformed": 1,
            "github:replay": 1,
            "github:ignored": 3,  # other_scope, not_found, ping
            "github:unknown_event": 1,
            "github:not_allowed": 1,  # the GET
            "linear:ignored": 1,
            "linear:replay": 1,
            "linear:bad_signature": 1,
            "linear:unknown_event": 1,
        }
        assert "outcome=bad_signature" in receiver.log()
        # One audit record per request answered, wrong paths included, sent in the background.
        tree.wait("the audit records", lambda: len(receiver.audit_records()) >= 20)
        outcomes = [r["payload"]["outcome"] for r in receiver.audit_records()]
        expected = {"bad_signature": 4, "too_large": 2, "malformed": 1, "not_allowed": 3,
                    "ignored": 4, "accepted": 2, "replay": 2, "unknown_event": 2}  # fmt: skip
        assert {o: outcomes.count(o) for o in set(outcomes)} == expected, outcomes
        events_check = tree.doctor("tracker-events")  # the operator's view of the source
        assert events_check["status"] == "ok", events_check
        assert "webhook_github is live; 2 event(s) sent" in events_check["detail"], events_check
        assert receiver.stop() == 0


@pytest.mark.slow
def test_a_signed_linear_delivery_dispatches_within_the_configured_project(
    tmp_path: Path,
) -> None:
    outside = linear_node(2, project={"id": "proj-2", "slugId": "other"})
    with FakeLinear([linear_node(1, state="In Progress"), outside]) as srv:
        tree = linear_tree(tmp_path, srv, poll_ms=HOUR_MS)
        with running(tree) as receiver:
            now_ms = int(time.time() * 1000)
            # Another project's issue: verified, re-fetched within this project, not found.
            reply = receiver.post("/hooks/linear", *linear_delivery("lin-2", stamp_ms=now_ms))
            assert reply.json()["reason"] == "not_found", reply.text
            srv.nodes[0]["state"] = {"id": "st-todo", "name": "Todo", "type": "unstarted"}
            reply = receiver.post("/hooks/linear", *linear_delivery("lin-1", stamp_ms=now_ms))
            assert reply.json()["outcome"] == "accepted", reply.text
            tree.wait("ENG-1's agent", lambda: tree.agent_started_ns("ENG-1") is not None)
            assert tree.agent_started_ns("ENG-2") is None


@pytest.mark.slow
def test_with_the_receiver_down_polling_alone_dispatches(tmp_path: Path, fake: FakeGitHub) -> None:
    tree = github_tree(tmp_path, fake, poll_ms=200)
    try:
        label(fake, 1, "Todo")
        tree.start()  # no symphony-webhook: nothing connects to the hint socket
        tree.wait("GH-1's agent", lambda: tree.agent_started_ns("GH-1") is not None)
    finally:
        tree.stop()


@pytest.mark.parametrize(
    "args",
    [
        [],  # no secret at all
        ["--secret-file", "bitbucket=/dev/null"],  # no such provider
        ["--secret-file", "github=/nonexistent/secret"],
        ["--listen", "nohost"],
        ["--secret-file", "gitlab_signing={s}"],  # not a whsec_<base64> signing token
        ["--secret-file", "asana={s}"],  # Asana without a state directory
    ],
)
def test_config_errors_exit_78(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "symphonyd.toml").write_text(
        f'[paths]\nstate_dir = "{tmp_path}"\nruntime_dir = "{tmp_path}"\n'
    )
    (tmp_path / "s").write_bytes(b"0123456789abcdef0123")
    args = [a.format(s=tmp_path / "s") for a in args]
    if "--listen" in args:
        args = [*args, "--secret-file", f"github={tmp_path / 's'}"]
    host = str(tmp_path / "symphonyd.toml")
    proc = subprocess.run(
        [sys.executable, "-m", "symphonyd.webhook", "--host-config", host,
         "--listen", "127.0.0.1:0", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 78, proc.stderr
