"""A GitHub REST server for tests: issues of one repository with Link-header pagination, and
issue dependencies (``issue_dependencies_summary`` on every record, the ``blocked_by`` list)."""

from __future__ import annotations

from typing import Any

from tests.tracker.fakeserver import FakeServer

TOKEN = "ghp_CANARY_a1b2c3d4e5f6_do_not_leak"
REPO = "acme/widgets"


def gh_issue(
    n: int, state: str = "open", labels: tuple[str, ...] = ("Bug",), **extra: Any
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "id": 1000 + n,
        "node_id": f"I_kw{n}",
        "number": n,
        "title": f"Issue {n}",
        "body": f"Body {n}",
        "state": state,
        "html_url": f"https://github.com/{REPO}/issues/{n}",
        "labels": [{"name": name} for name in labels],
        "assignee": None,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-02T00:00:00Z",
    }
    issue.update(extra)
    return issue


class FakeGitHub(FakeServer):
    def __init__(self, issues: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.issues: list[dict[str, Any]] = issues or []
        self.comments: list[tuple[int, str]] = []
        self.foreign_next = False
        # issue number -> the records blocking it (this repository's or another's)
        self.blocked_by: dict[int, list[dict[str, Any]]] = {}
        self.fail_dependencies = False

    def _shown(self, issue: dict[str, Any]) -> dict[str, Any]:
        blockers = self.blocked_by.get(issue["number"], [])
        summary = {
            "blocked_by": sum(1 for b in blockers if b.get("state") == "open"),
            "total_blocked_by": len(blockers),
            "blocking": 0,
            "total_blocking": 0,
        }
        return {**issue, "issue_dependencies_summary": summary}

    def answer(self, method, path, query, body, headers):
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {}, {"message": "Bad credentials"}
        prefix = f"/repos/{REPO}/issues"
        if not path.startswith(prefix):
            return 404, {}, {"message": "Not Found"}
        rest = path[len(prefix) :].strip("/").split("/") if path != prefix else []
        if method == "GET" and not rest:
            return self._list(query)
        found = [i for i in self.issues if str(i.get("number")) == rest[0]]
        if not found:
            return 404, {}, {"message": "Not Found"}
        issue = found[0]
        if method == "GET" and len(rest) == 1:
            return 200, {}, self._shown(issue)
        if method == "GET" and rest[1:] == ["dependencies", "blocked_by"]:
            if self.fail_dependencies:
                return 502, {}, {"message": "Bad Gateway"}
            return 200, {}, self.blocked_by.get(issue["number"], [])
        if method == "POST" and rest[1:] == ["comments"]:
            self.comments.append((issue["number"], body["body"]))
            return 201, {}, {"id": len(self.comments), "html_url": "https://github.com/c"}
        if method == "PATCH" and len(rest) == 1:
            if "state" in body:
                issue["state"] = body["state"]
            if "labels" in body:
                issue["labels"] = [{"name": n} for n in body["labels"]]
            return 200, {}, issue
        return 405, {}, {"message": "nope"}

    def _list(self, query: dict[str, list[str]]):
        state = query.get("state", ["open"])[0]
        per_page = int(query.get("per_page", ["30"])[0])
        page = int(query.get("page", ["1"])[0])
        match = [i for i in self.issues if state == "all" or i.get("state") == state]
        if "assignee" in query:
            match = [
                i for i in match if (i.get("assignee") or {}).get("login") == query["assignee"][0]
            ]
        chunk = [self._shown(i) for i in match[(page - 1) * per_page : page * per_page]]
        headers = {}
        if page * per_page < len(match):
            base = "https://evil.example" if self.foreign_next else self.base_url
            headers["Link"] = (
                f"<{base}/repos/{REPO}/issues?state={state}&per_page={per_page}"
                f'&page={page + 1}>; rel="next", <{base}/x>; rel="last"'
            )
        return 200, headers, chunk
