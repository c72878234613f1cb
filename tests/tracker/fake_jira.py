"""A Jira Cloud REST v3 server for tests, written from Atlassian's public API documentation.

``POST /rest/api/3/search/jql`` with ``nextPageToken`` paging (opaque tokens, ``isLast``), a
400 for a JQL ``id in (...)`` that names an issue which does not exist (as Jira does), basic
auth with ``email:api-token``, issue links with ``inwardIssue``/``outwardIssue``, transitions
(``GET`` lists them, ``POST`` answers 204) and comments with ADF bodies.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from tests.tracker.fakeserver import FakeServer

EMAIL = "bot@example.com"
TOKEN = "ATATT3xCANARY_jira_token_do_not_leak_0123456789"
CREDENTIAL = f"{EMAIL}:{TOKEN}"
PROJECT = "ENG"
CATEGORIES = {
    "to do": "new",
    "in progress": "indeterminate",
    "human review": "indeterminate",
    "done": "done",
    "won't do": "done",
}
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def jira_issue(n: int, state: str = "To Do", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "summary": f"Issue {n}",
        "status": {
            "name": state,
            "statusCategory": {"key": CATEGORIES.get(state.lower(), "indeterminate")},
        },
        "labels": ["backend"],
        "priority": {"name": "Medium", "id": "3"},
        "issuelinks": [],
        "description": {
            "type": "doc",
            "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": f"Body {n}"}]}],
        },
        "assignee": None,
        "created": "2026-01-01T10:00:00.000+0100",
        "updated": "2026-01-02T10:00:00.000+0100",
    }
    base.update(fields)
    return {"id": str(10_000 + n), "key": f"{PROJECT}-{n}", "self": "x", "fields": base}


def blocked_by(blocker: dict[str, Any], link_type: str = "Blocks") -> dict[str, Any]:
    """A link as it appears on the blocked issue: the blocker is the inward issue."""
    return {
        "id": f"L{blocker['id']}",
        "type": {"name": link_type, "inward": "is blocked by", "outward": "blocks"},
        "inwardIssue": {
            "id": blocker["id"],
            "key": blocker["key"],
            "fields": {"status": blocker["fields"]["status"], "summary": "s"},
        },
    }


class FakeJira(FakeServer):
    def __init__(self, issues: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.issues: list[dict[str, Any]] = issues or []
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.transitions_posted: list[tuple[str, str]] = []
        self.jql: list[str] = []
        self.repeat_token = False
        self.static: list[dict[str, Any]] | None = None  # bench: skip filtering

    def answer(self, method, path, query, body, headers):
        expected = "Basic " + base64.b64encode(CREDENTIAL.encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {}, {"errorMessages": ["Client must be authenticated"], "errors": {}}
        if method == "POST" and path == "/rest/api/3/search/jql":
            return self._search(body)
        m = re.fullmatch(r"/rest/api/3/issue/([^/]+)(/comment|/transitions)?", path)
        found = [i for i in self.issues if m and m.group(1) in (i["id"], i["key"])]
        if not found:
            return 404, {}, {"errorMessages": ["Issue does not exist"], "errors": {}}
        issue, sub = found[0], m.group(2) if m else None
        if sub == "/comment" and method == "POST":
            thread = self.comments.setdefault(issue["id"], [])
            comment = {
                "id": str(20_000 + len(thread)),
                "author": {"displayName": "Symphony Bot"},
                "created": "2026-01-03T00:00:00.000+0000",
                "body": body["body"],
            }
            thread.append(comment)
            return 201, {}, comment
        if sub == "/comment":
            thread = self.comments.get(issue["id"], [])
            newest = list(reversed(thread))[: int(query.get("maxResults", ["50"])[0])]
            return 200, {}, {"comments": newest, "startAt": 0, "total": len(thread)}
        if sub == "/transitions" and method == "GET":
            current = issue["fields"]["status"]["name"]
            return 200, {}, {"transitions": self._transitions(current)}
        if sub == "/transitions" and method == "POST":
            wanted = body["transition"]["id"]
            for t in self._transitions(issue["fields"]["status"]["name"]):
                if t["id"] == wanted:
                    issue["fields"]["status"] = {
                        "name": t["to"]["name"],
                        "statusCategory": t["to"]["statusCategory"],
                    }
                    self.transitions_posted.append((issue["key"], wanted))
                    return 204, {}, None
            return 400, {}, {"errorMessages": ["Transition id is not valid"], "errors": {}}
        return 405, {}, {"errorMessages": ["nope"]}

    def _transitions(self, current: str) -> list[dict[str, Any]]:
        # Every status reachable from every other except itself ("Won't Do" only from To Do).
        out = []
        for n, (name, cat) in enumerate(CATEGORIES.items()):
            if name == current.lower() or (name == "won't do" and current.lower() != "to do"):
                continue
            label = name.title().replace("'T", "'t")
            target = {"name": label, "statusCategory": {"key": cat}}
            out.append({"id": str(11 + n), "name": f"Go {label}", "to": target})
        return out

    def _search(self, body: dict[str, Any]):
        jql: str = body["jql"]
        self.jql.append(jql)
        found: Any = self.static if self.static is not None else self._filter(jql)
        if isinstance(found, tuple):
            return found  # an error answer
        match: list[dict[str, Any]] = found
        size = min(int(body.get("maxResults", 50)), 5000)
        start = int(base64.b64decode(body["nextPageToken"])) if "nextPageToken" in body else 0
        page = match[start : start + size]
        out: dict[str, Any] = {"issues": page}
        if start + size < len(match):
            nxt = 0 if self.repeat_token else start + size
            out["nextPageToken"] = base64.b64encode(str(nxt).encode()).decode()
            out["isLast"] = False
        else:
            out["isLast"] = True
        return 200, {}, out

    def _filter(self, jql: str) -> Any:
        project = re.search(r'project = "([^"]*)"', jql)
        match = [i for i in self.issues if project and i["key"].startswith(project.group(1) + "-")]
        ids = re.search(r"id in \(([^)]*)\)", jql)
        if ids:
            wanted = [x.strip() for x in ids.group(1).split(",")]
            missing = [x for x in wanted if x not in {i["id"] for i in self.issues}]
            if missing:
                text = f"An issue with key '{missing[0]}' does not exist for field 'id'."
                return 400, {}, {"errorMessages": [text], "errors": {}}
            match = [i for i in match if i["id"] in wanted]
        states = re.search(r"status in \(((?:\"(?:[^\"\\]|\\.)*\"(?:, )?)*)\)", jql)
        if states:
            names = {
                s.replace('\\"', '"').replace("\\\\", "\\").lower()
                for s in _QUOTED.findall(states.group(1))
            }
            match = [i for i in match if _status_name(i).lower() in names]
        label = re.search(r'AND \(labels = "([^"]*)"\)', jql)
        if label:
            match = [i for i in match if label.group(1) in i["fields"].get("labels", [])]
        return match


def _status_name(issue: dict[str, Any]) -> str:
    status = issue["fields"].get("status")
    name = status.get("name") if isinstance(status, dict) else status
    return name if isinstance(name, str) else ""
