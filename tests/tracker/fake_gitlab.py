"""A GitLab REST v4 server for tests, written from GitLab's public API documentation: project
issues with keyset (``pagination=keyset``, opaque ``cursor``) or offset (``page``) pagination
announced in the ``Link`` header, the ``iids[]``, ``state`` and ``assignee_username`` filters,
``POST`` of a new issue, ``PUT`` with ``state_event``/``add_labels``/``remove_labels`` (scoped
labels replace their scope), notes, and issue links with ``link_type``. Auth is the
``PRIVATE-TOKEN`` header."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, urlencode

from tests.tracker.fakeserver import FakeServer

TOKEN = "glpat-CANARY_x9y8z7w6v5_do_not_leak"
PROJECT = "acme/platform/widgets"
PROJECT_ID = 4242


def gl_issue(
    iid: int, state: str = "opened", labels: Any = ("Bug",), **extra: Any
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "id": 900_000 + iid,
        "iid": iid,
        "project_id": PROJECT_ID,
        "title": f"Issue {iid}",
        "description": f"Body {iid}",
        "state": state,
        "labels": list(labels),
        "assignees": [],
        "assignee": None,
        "author": {"id": 1, "username": "alice"},
        "web_url": f"https://gitlab.example/{PROJECT}/-/issues/{iid}",
        "references": {"short": f"#{iid}", "relative": f"#{iid}", "full": f"{PROJECT}#{iid}"},
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-02T00:00:00.000Z",
        "blocking_issues_count": 0,
    }
    issue.update(extra)
    return issue


class FakeGitLab(FakeServer):
    def __init__(self, issues: list[dict[str, Any]] | None = None, port: int = 0) -> None:
        super().__init__(port)
        handler = self.httpd.RequestHandlerClass
        handler.do_PUT = handler.do_GET  # type: ignore[attr-defined]
        self.issues: list[dict[str, Any]] = issues or []
        self.notes: dict[int, list[dict[str, Any]]] = {}
        # iid -> issue links as GitLab lists them (the other issue plus link_type)
        self.links: dict[int, list[dict[str, Any]]] = {}
        self.fail_links = False
        self.foreign_next = False
        self.keyset_supported = True
        self.prefix = f"/api/v4/projects/{quote(PROJECT, safe='')}"

    def answer(self, method, path, query, body, headers):
        if headers.get("PRIVATE-TOKEN") != TOKEN:
            return 401, {}, {"message": "401 Unauthorized"}
        if not path.startswith(self.prefix + "/issues"):
            return 404, {}, {"message": "404 Project Not Found"}
        rest = path[len(self.prefix + "/issues") :].strip("/")
        parts = rest.split("/") if rest else []
        if method == "GET" and not parts:
            return self._list(query)
        if method == "POST" and not parts:  # new issue: title, description, labels "a,b"
            iid = 1 + max((i["iid"] for i in self.issues if isinstance(i, dict)), default=0)
            labels = [x for x in str(body.get("labels", "")).split(",") if x]
            issue = gl_issue(iid, labels=labels, title=body["title"])
            issue["description"] = body.get("description")
            self.issues.append(issue)
            return 201, {}, issue
        found = [i for i in self.issues if isinstance(i, dict) and str(i.get("iid")) == parts[0]]
        if not found:
            return 404, {}, {"message": "404 Not found"}
        issue = found[0]
        if method == "GET" and parts[1:] == ["links"]:
            if self.fail_links:
                return 502, {}, {"message": "502 Bad Gateway"}
            return 200, {}, self.links.get(issue["iid"], [])
        if parts[1:] == ["notes"]:
            notes = self.notes.setdefault(issue["iid"], [])
            if method == "POST":
                note = {
                    "id": 7000 + len(notes),
                    "body": body["body"],
                    "author": {"username": "symphony-bot"},
                    "system": False,
                    "created_at": "2026-01-03T00:00:00.000Z",
                }
                notes.append(note)
                return 201, {}, note
            ordered = notes if query.get("sort", ["desc"])[0] == "asc" else notes[::-1]
            return 200, {}, ordered[: int(query.get("per_page", ["20"])[0])]
        if method == "PUT" and len(parts) == 1:
            return 200, {}, self._update(issue, body or {})
        return 405, {}, {"message": "405 Method Not Allowed"}

    def _update(self, issue: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        event = body.get("state_event")
        if event == "close":
            issue["state"] = "closed"
        elif event == "reopen":
            issue["state"] = "opened"
        labels = list(issue["labels"])
        for name in filter(None, str(body.get("remove_labels", "")).split(",")):
            labels = [x for x in labels if x != name]
        for name in filter(None, str(body.get("add_labels", "")).split(",")):
            if "::" in name:  # a scoped label replaces any other label of its scope
                scope = name.rsplit("::", 1)[0] + "::"
                labels = [x for x in labels if not x.startswith(scope)]
            if name not in labels:
                labels.append(name)
        issue["labels"] = labels
        return issue

    def _matching(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        state = query.get("state", ["all"])[0]
        match = [
            i
            for i in self.issues
            if state == "all" or (isinstance(i, dict) and i.get("state") == state)
        ]
        if "iids[]" in query:
            wanted = set(query["iids[]"])
            match = [i for i in match if str(i.get("iid")) in wanted]
        if "assignee_username" in query:
            who = query["assignee_username"][0]
            match = [
                i for i in match if who in [a.get("username") for a in i.get("assignees") or []]
            ]
        return match

    def _list(self, query: dict[str, list[str]]):
        match = self._matching(query)
        per_page = min(int(query.get("per_page", ["20"])[0]), 100)
        keyset = query.get("pagination", [""])[0] == "keyset" and self.keyset_supported
        if keyset:
            cursor = query.get("cursor", [""])[0]
            start = int(base64.b64decode(cursor)) if cursor else 0
        else:
            start = (int(query.get("page", ["1"])[0]) - 1) * per_page
        chunk = match[start : start + per_page]
        headers = {}
        if start + per_page < len(match):
            keep = [(k, v) for k, vs in query.items() if k not in ("cursor", "page") for v in vs]
            if keyset:
                keep.append(("cursor", base64.b64encode(str(start + per_page).encode()).decode()))
            else:
                keep.append(("page", str(start // per_page + 2)))
                headers["X-Next-Page"] = str(start // per_page + 2)
            base = "https://evil.example" if self.foreign_next else self.base_url
            headers["Link"] = (
                f'<{base}{self.prefix}/issues?{urlencode(keep)}>; rel="next", '
                f'<{base}{self.prefix}/issues?page=1>; rel="first"'
            )
        return 200, headers, chunk


def link(other: dict[str, Any], link_type: str = "is_blocked_by") -> dict[str, Any]:
    """An entry of ``GET .../issues/:iid/links``: the other issue plus the link fields."""
    return {**other, "issue_link_id": 1, "link_type": link_type, "link_created_at": "x"}
