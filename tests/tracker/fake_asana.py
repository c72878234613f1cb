"""An Asana REST 1.0 server for tests, written from Asana's public API documentation: every
answer wrapped in ``{"data": ...}``, errors as ``{"errors": [{"message": ...}]}``, offset
pagination (``limit``, opaque ``offset``, ``next_page``), ``GET /tasks?project=`` with
``completed_since=now``, ``POST /batch`` of GET actions, ``PUT /tasks/{gid}``, stories
(comments) and ``POST /sections/{gid}/addTask``. Auth is ``Authorization: Bearer``."""

from __future__ import annotations

import base64
from typing import Any

from tests.tracker.fakeserver import FakeServer

TOKEN = "2/1200000000000001/1209999999999999:CANARYasanaTokenDoNotLeak"
WORKSPACE = "1100000000000001"
PROJECT = "1200000000000002"
SECTIONS = {"1300000000000001": "To do", "1300000000000002": "Doing",
            "1300000000000003": "Review", "1300000000000004": "Done"}  # fmt: skip
SECTION_GID = {name: gid for gid, name in SECTIONS.items()}


def gid_of(n: int) -> str:
    return str(1400000000000000 + n)


def asana_task(
    n: int, section: str = "To do", completed: bool = False, **extra: Any
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "gid": gid_of(n),
        "resource_type": "task",
        "name": f"Task {n}",
        "notes": f"Notes {n}",
        "completed": completed,
        "permalink_url": f"https://app.asana.com/0/{PROJECT}/{gid_of(n)}",
        "created_at": "2026-01-01T00:00:00.000Z",
        "modified_at": "2026-01-02T00:00:00.000Z",
        "workspace": {"gid": WORKSPACE, "resource_type": "workspace"},
        "tags": [{"gid": "1500000000000001", "name": "Bug"}],
        "assignee": None,
        "memberships": [
            {
                "project": {"gid": PROJECT},
                "section": {"gid": SECTION_GID.get(section, "1"), "name": section},
            }
        ],  # fmt: skip
        "dependencies": [],
        "custom_fields": [],
    }
    task.update(extra)
    return task


def _page(items: list[Any], query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
    limit = int(query.get("limit", ["20"])[0])
    if not 1 <= limit <= 100:
        return 400, {}, {"errors": [{"message": "limit: Must be between 1 and 100"}]}
    raw = query.get("offset", [""])[0]
    start = int(base64.b64decode(raw).decode()) if raw else 0
    chunk = items[start : start + limit]
    nxt = None
    if start + limit < len(items):
        token = base64.b64encode(str(start + limit).encode()).decode()
        nxt = {"offset": token, "path": f"/x?offset={token}", "uri": f"https://evil/{token}"}
    return 200, {}, {"data": chunk, "next_page": nxt}


class FakeAsana(FakeServer):
    def __init__(self, tasks: list[Any] | None = None) -> None:
        super().__init__()
        handler = self.httpd.RequestHandlerClass
        handler.do_PUT = handler.do_GET  # type: ignore[attr-defined]
        self.tasks: list[Any] = tasks or []
        self.stories: dict[str, list[dict[str, Any]]] = {}
        self.sections = dict(SECTIONS)
        self.batch_faults: dict[str, int] = {}  # gid -> inner status to answer
        self.repeat_offset = False

    def _task(self, gid: str) -> Any:
        for t in self.tasks:
            if isinstance(t, dict) and t.get("gid") == gid:
                return t
        return None

    def answer(self, method, path, query, body, headers):
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {}, {"errors": [{"message": "Not Authorized"}]}
        parts = path.removeprefix("/api/1.0").strip("/").split("/")
        if method == "GET" and parts == ["tasks"]:
            if query.get("project") != [PROJECT]:
                return 400, {}, {"errors": [{"message": "project: Unknown object"}]}
            items = self.tasks
            if query.get("completed_since") == ["now"]:
                items = [t for t in items if not (isinstance(t, dict) and t.get("completed"))]
            status, hdrs, page = _page(items, query)
            if self.repeat_offset and page.get("next_page"):
                page["next_page"]["offset"] = query.get("offset", ["MA=="])[0] or "MA=="
            return status, hdrs, page
        if method == "POST" and parts == ["batch"]:
            return 200, {}, {"data": [self._action(a) for a in body["data"]["actions"]]}
        if parts[:1] == ["tasks"] and len(parts) >= 2:
            task = self._task(parts[1])
            if task is None:
                return 404, {}, {"errors": [{"message": "task: Unknown object"}]}
            if method == "PUT" and len(parts) == 2:
                task.update(body["data"])
                return 200, {}, {"data": task}
            if parts[2:] == ["stories"]:
                stories = self.stories.setdefault(parts[1], [])
                if method == "POST":
                    story = {"gid": str(1600000000000000 + len(stories)), "type": "comment",
                             "text": body["data"]["text"], "created_by": {"name": "bot"},
                             "created_at": "2026-01-03T00:00:00.000Z"}  # fmt: skip
                    stories.append(story)
                    return 201, {}, {"data": story}
                return _page(stories, query)
        if method == "GET" and parts == ["projects", PROJECT, "sections"]:
            listed = [{"gid": g, "name": n} for g, n in self.sections.items()]
            return _page(listed, query)
        if method == "POST" and parts[:1] == ["sections"] and parts[2:] == ["addTask"]:
            name = self.sections.get(parts[1])
            task = self._task(body["data"]["task"])
            if name is None or task is None:
                return 404, {}, {"errors": [{"message": "Unknown object"}]}
            task["memberships"] = [
                {"project": {"gid": PROJECT}, "section": {"gid": parts[1], "name": name}}
            ]
            return 200, {}, {"data": {}}
        return 404, {}, {"errors": [{"message": "No matching route"}]}

    def _action(self, action: dict[str, Any]) -> dict[str, Any]:
        gid = action["relative_path"].rsplit("/", 1)[1]
        if gid in self.batch_faults:
            status = self.batch_faults[gid]
            return {"status_code": status, "headers": {"Retry-After": "7"}, "body": {}}
        task = self._task(gid)
        if task is None:
            return {"status_code": 404, "headers": {}, "body": {"errors": [{"message": "x"}]}}
        return {"status_code": 200, "headers": {}, "body": {"data": task}}
