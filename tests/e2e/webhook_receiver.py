"""The webhook phase of the end-to-end suite (issue 21), in the suite's own container.

Once the suite runs on the fake GitLab (tests/e2e/gitlab_tracker.py), the operator sets up
GitLab's webhook as docs/change-events.md says: the secret token and the signing token as
files in /etc/symphony/credentials/webhook/ (the directory the unit loads with
``LoadCredential=``), then ``systemctl enable --now symphony-webhook.socket``. A delivery
posted to 127.0.0.1:4080 without them is refused (401) with a journal line and an audit
record; one carrying both is accepted (202): the packaged receiver reached the packaged
tracker over ``tracker-webhook.sock`` and the tracker re-fetched the issue from GitLab.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from devtools.nspawn import Container
from tests.webhook.deliveries import gitlab_delivery
from tests.webhook.harness import GITLAB_SIGNING, GITLAB_TOKEN

CREDENTIALS = "/etc/symphony/credentials/webhook"
URL = "http://127.0.0.1:4080/hooks/gitlab"
POST = """\
import json, sys, urllib.error as e, urllib.request as u
url, body, headers = sys.argv[1], sys.argv[2].encode(), json.loads(sys.argv[3])
try:
    with u.urlopen(u.Request(url, data=body, headers=headers, method="POST"), timeout=60) as r:
        print(json.dumps([r.status, json.loads(r.read())]))
except e.HTTPError as err:
    print(json.dumps([err.code, json.loads(err.read())]))
"""


def post(c: Container, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    out = c.run(["python3", "-c", POST, URL, body.decode(), json.dumps(headers)]).stdout
    status, reply = json.loads(out)
    return int(status), reply


def check(c: Container, iid: int) -> None:
    for name, value in (("gitlab", GITLAB_TOKEN), ("gitlab_signing", GITLAB_SIGNING)):
        c.run(["install", "-m", "0600", "/dev/null", f"{CREDENTIALS}/{name}"])
        c.run(["tee", f"{CREDENTIALS}/{name}"], input=value.decode() + "\n")
    c.run(["systemctl", "enable", "--now", "symphony-webhook.socket"])

    body, headers = gitlab_delivery(iid)
    bare = {k: v for k, v in headers.items()
            if k not in ("X-Gitlab-Token", "webhook-signature")}  # fmt: skip
    status, reply = post(c, body, bare)
    assert status == 401 and reply["error"] == "bad_signature", (status, reply)
    status, reply = post(c, body, headers)
    assert status == 202 and reply["outcome"] == "accepted", (status, reply)
    status, reply = post(c, body, headers)  # the same delivery again
    assert status == 409 and reply["error"] == "replay", (status, reply)

    # Journal lines and audit records are written in the background: wait for them.
    _wait("the receiver's journal line", lambda: "outcome=bad_signature" in _journal(c, "webhook"))
    _wait("the tracker's refresh", lambda: "source=webhook_gitlab outcome=refreshed"
          in _journal(c, "tracker"))  # fmt: skip
    _wait("three audit records", lambda: len(_records(c)) >= 3)
    seen = [(r["provider"], r["outcome"], r["status"]) for r in _records(c)]
    assert seen == [("gitlab", "bad_signature", 401), ("gitlab", "accepted", 202),
                    ("gitlab", "replay", 409)], seen  # fmt: skip


def _journal(c: Container, daemon: str) -> str:
    unit = f"symphony-{daemon}.service"
    return c.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit]).stdout


def _records(c: Container) -> list[dict[str, Any]]:
    shown = c.run(
        ["symphonyctl", "audit", "show", "--dir", "/var/lib/symphony/audit", "--type",
         "webhook_delivery", "--json"]
    ).stdout  # fmt: skip
    return [json.loads(line)["payload"] for line in shown.splitlines() if line.strip()]


def _wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)
