"""A Linear GraphQL server for tests: answers the adapter's documents from an in-memory board.

It recognises documents by their operation name and refuses any document that is not one of
the adapter's static constants, so a test fails if the adapter ever builds a query.
"""

from __future__ import annotations

from typing import Any

from symphonyd.tracker import linear_queries as q
from tests.tracker.fakeserver import FakeServer

TOKEN = "lin_api_CANARY_7f3a9c2e1d_do_not_leak"
STATES = [
    {"id": "st-todo", "name": "Todo", "type": "unstarted"},
    {"id": "st-prog", "name": "In Progress", "type": "started"},
    {"id": "st-review", "name": "Human Review", "type": "started"},
    {"id": "st-done", "name": "Done", "type": "completed"},
]


def linear_node(n: int, state: str = "Todo", **extra: Any) -> dict[str, Any]:
    st = next(s for s in STATES if s["name"] == state)
    node: dict[str, Any] = {
        "id": f"lin-{n}",
        "identifier": f"ENG-{n}",
        "title": f"Issue {n}",
        "description": f"Body {n}",
        "priority": (n % 5),
        "branchName": f"eng-{n}",
        "url": f"https://linear.app/acme/issue/ENG-{n}",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-02T03:04:05.000Z",
        "state": dict(st),
        "assignee": None,
        "team": {"id": "team-1", "key": "ENG"},
        "project": {"id": "proj-1", "slugId": "symph"},
        "labels": {"nodes": [{"name": " Backend "}, {"name": "backend"}, {"name": "UI"}]},
        "inverseRelations": {"nodes": []},
    }
    node.update(extra)
    return node


class FakeLinear(FakeServer):
    def __init__(self, nodes: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.nodes: list[dict[str, Any]] = nodes or []
        self.comments: list[tuple[str, str]] = []
        self.viewer_id = "user-me"

    def answer(self, method, path, query, body, headers):
        if headers.get("Authorization") != TOKEN:
            return 401, {}, {"errors": [{"message": "Authentication required"}]}
        if not isinstance(body, dict) or body.get("query") not in q.ALL_DOCUMENTS:
            return 400, {}, {"errors": [{"message": "unknown document"}]}
        doc, var = body["query"], body.get("variables") or {}
        if doc == q.ISSUES_PAGE:
            return 200, {}, {"data": {"issues": self._page(var)}}
        if doc == q.VIEWER:
            return 200, {}, {"data": {"viewer": {"id": self.viewer_id}}}
        if doc == q.TEAM_STATES:
            return (
                200,
                {},
                {
                    "data": {
                        "issue": {
                            "id": var["issueId"],
                            "team": {"id": "team-1", "states": {"nodes": STATES}},
                        }
                    }
                },
            )
        if doc == q.COMMENT_CREATE:
            self.comments.append((var["issueId"], var["body"]))
            return (
                200,
                {},
                {
                    "data": {
                        "commentCreate": {
                            "success": True,
                            "comment": {
                                "id": f"c-{len(self.comments)}",
                                "url": "https://linear.app/c",
                            },
                        }
                    }
                },
            )
        if doc == q.ISSUE_MOVE:
            st = next(s for s in STATES if s["id"] == var["stateId"])
            for node in self.nodes:
                if node["id"] == var["issueId"]:
                    node["state"] = dict(st)
            return (
                200,
                {},
                {
                    "data": {
                        "issueUpdate": {
                            "success": True,
                            "issue": {"id": var["issueId"], "state": {"name": st["name"]}},
                        }
                    }
                },
            )
        return 200, {}, {"data": {"issue": {"id": var.get("issueId"), "echo": var}}}

    def _page(self, var: dict[str, Any]) -> dict[str, Any]:
        flt = var["filter"]
        matches = [n for n in self.nodes if _matches(n, flt)]
        start = int(var["after"].split(":")[1]) if var.get("after") else 0
        page = matches[start : start + int(var["first"])]
        end = start + len(page)
        return {
            "nodes": page,
            "pageInfo": {
                "hasNextPage": end < len(matches),
                "endCursor": f"c:{end}" if page else None,
            },
        }


def _matches(node: dict[str, Any], flt: dict[str, Any]) -> bool:
    try:
        if "project" in flt and node["project"]["slugId"] != flt["project"]["slugId"]["eq"]:
            return False
        if "team" in flt and node["team"]["key"] != flt["team"]["key"]["eq"]:
            return False
        if "state" in flt and node["state"]["name"] not in flt["state"]["name"]["in"]:
            return False
        if "id" in flt and node["id"] not in flt["id"]["in"]:
            return False
    except (KeyError, TypeError):
        # Malformed records are still "visible" to their filter so the adapter sees them.
        return "id" not in flt or node.get("id") in flt["id"]["in"]
    return True
