"""Asana adapter over REST API 1.0 (profile: docs/trackers/asana.md).

Scope is one project in one workspace. The dispatch id is the task gid; the identifier is
``<identifier_prefix>-<gid>``. A completed task is in ``completed_state``; an open task is in
the state of its section in the project (``section_states`` maps names, else the section name
is the state; docs/design/0457-asana-sections-as-states.md). Dependencies that are neither
completed nor in a terminal state hold a task back. A poll is one paged task list; a refresh
is one ``/batch`` request per ten ids (Asana has no list-by-gids query).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from symphonyd.core.api.tracker import ToolResult
from symphonyd.core.errors import ValidationError
from symphonyd.core.issue import BlockerRef, Issue, build_issue, cap_text, state_key
from symphonyd.tracker.adapter import blocked
from symphonyd.tracker.asana_config import DEFAULT_SECRET, GID, parse_asana_provider
from symphonyd.tracker.errors import PAGINATION, RATE_LIMITED, RESPONSE, STATUS, tracker_error
from symphonyd.tracker.http import HttpPolicy, retry_after_s
from symphonyd.tracker.http_adapter import HttpTrackerAdapter
from symphonyd.tracker.tools import ToolFailure

log = logging.getLogger(__name__)

MAX_PAGES = 10_000
BATCH = 10  # Asana's largest /batch request
STORY_PAGES = 10  # a read shows comments from the first 1 000 stories at most
COMMENTS_SHOWN = 50
MAX_COMMENT_CHARS = 10_000
FIELDS = ",".join(
    (
        "name,notes,completed,permalink_url,created_at,modified_at,workspace.gid",
        "tags.name,assignee.gid,assignee.email,memberships.project.gid,memberships.section.name",
        "dependencies.completed,dependencies.memberships.project.gid",
        "dependencies.memberships.section.name,custom_fields.name,custom_fields.enum_value.name",
    )
)


class NotInProject(Exception):
    """A task outside the configured project or workspace: never visible to this adapter."""


class AsanaAdapter(HttpTrackerAdapter):
    kind = "asana"
    default_secret = DEFAULT_SECRET

    def _configure(self, p: Mapping[str, Any]) -> tuple[tuple[str, ...], HttpPolicy]:
        self.cfg = parse_asana_provider(p)
        self._api = self.cfg.endpoint
        return self.cfg.tool_states, self.cfg.policy

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Accept": "application/json",
            "User-Agent": "symphonyd-tracker",
        }

    # ------------------------------------------------------------------ reads

    async def _fetch_by_states(self, states: list[str]) -> list[Issue]:
        keys = {state_key(s) for s in states}
        params = {"project": self.cfg.project, "opt_fields": FIELDS}
        if state_key(self.cfg.completed_state) not in keys:
            params["completed_since"] = "now"  # Asana: only tasks not completed
        out: list[Issue] = []
        for record in await self._pages(f"{self._api}/tasks", params):
            try:
                issue = self._normalise(record)
            except (ValidationError, NotInProject) as exc:
                log.warning("asana: omitting a task record (%s)", _why(exc))
                continue
            if state_key(issue.state) in keys:
                out.append(issue)
        return out

    async def _fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        gids = [i for i in ids if GID.match(i)]  # others are ids this adapter never gave
        out: list[Issue] = []
        for start in range(0, len(gids), BATCH):
            actions = [
                {
                    "method": "get",
                    "relative_path": f"/tasks/{gid}",
                    "options": {"fields": FIELDS.split(",")},
                }
                for gid in gids[start : start + BATCH]
            ]
            resp = await self._call(
                "POST", f"{self._api}/batch", body={"data": {"actions": actions}}
            )
            results = resp.body.get("data") if isinstance(resp.body, dict) else None
            if resp.status != 200 or not isinstance(results, list) or len(results) != len(actions):
                raise tracker_error(
                    RESPONSE,
                    "asana batch answered without one result per action",
                    status=resp.status,
                )
            for result in results:
                record = _batch_record(result)
                if record is None:
                    continue  # deleted or not visible to the token
                try:
                    out.append(self._normalise(record))
                except NotInProject:
                    continue  # moved out of the project: no longer this workflow's issue
                except ValidationError as exc:
                    raise tracker_error(
                        RESPONSE,
                        f"asana returned a malformed record for a requested task: {exc.message}",
                    ) from None
        return out

    async def _pages(
        self, url: str, params: Mapping[str, str], *, max_pages: int = MAX_PAGES
    ) -> list[Any]:
        """Every record of an offset-paged list. Only ``next_page.offset`` is followed (never
        ``next_page.uri``: the token goes wherever a followed URL points)."""
        records: list[Any] = []
        seen: set[str] = set()
        offset: str | None = None
        for _ in range(max_pages):
            query = {**params, "limit": str(self.cfg.page_size)}
            if offset is not None:
                query["offset"] = offset
            resp = await self._call("GET", url, params=query, absent=())
            body = resp.body if isinstance(resp.body, dict) else {}
            data = body.get("data")
            if not isinstance(data, list):
                raise tracker_error(RESPONSE, "asana list answered without a 'data' array")
            records.extend(data)
            following = body.get("next_page")
            if following is None:
                return records
            offset = following.get("offset") if isinstance(following, dict) else None
            if not isinstance(offset, str) or not offset or len(offset) > 1024:
                raise tracker_error(PAGINATION, "asana next_page carries no usable offset")
            if offset in seen:
                raise tracker_error(PAGINATION, "asana pagination returned an offset twice")
            seen.add(offset)
        if max_pages < MAX_PAGES:
            return records
        raise tracker_error(PAGINATION, f"asana pagination exceeded {MAX_PAGES} pages")

    def _section(self, memberships: Any) -> tuple[bool, str | None]:
        """(in the project, the name of its section there)."""
        for item in memberships if isinstance(memberships, list) else []:
            project = item.get("project") if isinstance(item, dict) else None
            if isinstance(project, dict) and project.get("gid") == self.cfg.project:
                section = item.get("section")
                name = section.get("name") if isinstance(section, dict) else None
                return True, name if isinstance(name, str) and name.strip() else None
        return False, None

    def _state(self, record: Mapping[str, Any]) -> str | None:
        if record.get("completed") is True:
            return self.cfg.completed_state
        in_project, section = self._section(record.get("memberships"))
        if not in_project or record.get("completed") is not False:
            return None
        return self.cfg.state_of_section(section)

    def _blocker(self, record: Any) -> BlockerRef:
        gid = record.get("gid") if isinstance(record, dict) else None
        if not isinstance(gid, str) or not GID.match(gid):
            return BlockerRef()  # unknown: holds the task back
        return BlockerRef(id=gid, identifier=f"{self.cfg.prefix}-{gid}", state=self._state(record))

    def _priority(self, fields: Any) -> int | None:
        """The rank (1 = most urgent) of the ``priority_field`` enum value in ``priorities``."""
        if self.cfg.priority_field is None:
            return None
        for field in fields if isinstance(fields, list) else []:
            name = field.get("name") if isinstance(field, dict) else None
            if not isinstance(name, str) or name.strip().lower() != self.cfg.priority_field:
                continue
            value = field.get("enum_value")
            option = value.get("name") if isinstance(value, dict) else None
            if isinstance(option, str) and option.strip().lower() in self.cfg.priorities:
                return self.cfg.priorities.index(option.strip().lower()) + 1
            return None
        return None

    def _normalise(self, record: Any) -> Issue:
        if not isinstance(record, dict):
            raise ValidationError("task record is not an object")
        gid = record.get("gid")
        if not isinstance(gid, str) or not GID.match(gid):
            raise ValidationError("task field 'gid' must be a decimal string")
        workspace = record.get("workspace")
        if isinstance(workspace, dict) and workspace.get("gid") != self.cfg.workspace:
            raise NotInProject("task is in another workspace")
        if not self._section(record.get("memberships"))[0]:
            raise NotInProject("task is not in the configured project")
        completed = record.get("completed")
        if not isinstance(completed, bool):
            raise ValidationError("task field 'completed' must be a boolean")
        state = self._state(record)
        if state is None:
            raise ValidationError("task has no section in the project")
        deps = record.get("dependencies")
        refs = tuple(self._blocker(d) for d in (deps if isinstance(deps, list) else []))
        assignee = record.get("assignee")
        assignee = assignee if isinstance(assignee, dict) else {}
        who = {v for v in (assignee.get("gid"), assignee.get("email")) if isinstance(v, str)}
        tags = record.get("tags")
        labels = [
            t.get("name") for t in (tags if isinstance(tags, list) else []) if isinstance(t, dict)
        ]
        issue = build_issue(
            id=gid,
            identifier=f"{self.cfg.prefix}-{gid}",
            title=record.get("name"),
            state=state,
            dispatchable=not completed and (self.cfg.assignee is None or self.cfg.assignee in who),
            description=record.get("notes"),
            priority=self._priority(record.get("custom_fields")),
            url=record.get("permalink_url"),
            assignee_id=assignee.get("gid"),
            labels=labels,
            created_at=record.get("created_at"),
            updated_at=record.get("modified_at"),
            native_ref={"workspace": self.cfg.workspace, "project": self.cfg.project, "gid": gid},
        )
        held = blocked(refs, self.settings.terminal_states)
        return dataclasses.replace(
            issue, blocked_by=refs, dispatchable=issue.dispatchable and not held
        )

    # ------------------------------------------------------------------ tools

    def _task_url(self, issue: Issue) -> str:
        if not GID.match(issue.id):
            raise tracker_error(RESPONSE, "the run's issue id is not an Asana task gid")
        return f"{self._api}/tasks/{issue.id}"

    async def _read(self, issue: Issue) -> ToolResult:
        """The task and its latest comments (oldest first); system stories are left out."""
        result = await super()._read(issue)
        if not result.success:
            return result
        stories = await self._pages(
            f"{self._task_url(issue)}/stories",
            {"opt_fields": "type,text,created_at,created_by.name"},
            max_pages=STORY_PAGES,
        )
        comments = [_comment_view(s) for s in stories if isinstance(s, dict)]
        kept = [c for c in comments if c is not None][-COMMENTS_SHOWN:]
        return ToolResult(True, {**result.output, "comments": kept})

    async def _comment(self, issue: Issue, body: str) -> dict[str, Any]:
        resp = await self._call(
            "POST",
            f"{self._task_url(issue)}/stories",
            body={"data": {"text": body}},
            idempotent=False,
            absent=(),
        )
        data = resp.body.get("data") if isinstance(resp.body, dict) else None
        gid = data.get("gid") if isinstance(data, dict) else None
        return {"comment_id": gid if isinstance(gid, str) else None, "url": issue.url}

    async def _move(self, issue: Issue, state: str) -> dict[str, Any]:
        """Into the state's section when the project has one, then set ``completed`` to
        whether the state is ``completed_state``; the task is read back to confirm."""
        task_url = self._task_url(issue)
        done = state_key(state) == state_key(self.cfg.completed_state)
        section = await self._section_gid(self.cfg.section_of_state(state))
        if section is None and not done:
            raise ToolFailure(
                f"the Asana project has no section for state {state[:80]!r}", code="unknown_state"
            )
        if section is not None:
            await self._call(
                "POST",
                f"{self._api}/sections/{section}/addTask",
                body={"data": {"task": issue.id}},
                idempotent=False,
                absent=(),
            )
        await self._call(
            "PUT", task_url, body={"data": {"completed": done}}, idempotent=False, absent=()
        )
        current = await self.fetch_issues_by_ids([issue.id])
        if not current or state_key(current[0].state) != state_key(state):
            seen = current[0].state if current else "no longer visible"
            raise tracker_error(RESPONSE, f"asana kept the task in {seen!r} after the move")
        return {"state": current[0].state}

    async def _section_gid(self, name: str) -> str | None:
        sections = await self._pages(
            f"{self._api}/projects/{self.cfg.project}/sections", {"opt_fields": "name"}
        )
        for item in sections:
            if not isinstance(item, dict):
                continue
            gid, title = item.get("gid"), item.get("name")
            if not isinstance(gid, str) or not GID.match(gid) or not isinstance(title, str):
                continue
            if state_key(title) == state_key(name):
                return gid
        return None


def _batch_record(result: Any) -> Any:
    """The task of one /batch result, None when it is gone; a failed action keeps its SPEC
    11.4 category (an inner 429 waits like an outer one: ``retry_after_ms``)."""
    status = result.get("status_code") if isinstance(result, dict) else None
    if isinstance(status, bool) or not isinstance(status, int):
        raise tracker_error(RESPONSE, "asana batch result carries no status_code")
    if status in (404, 410):
        return None
    if status == 429:
        raw = result.get("headers")
        headers = {str(k).lower(): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        wait = retry_after_s(headers, time.time())
        raise tracker_error(
            RATE_LIMITED,
            "asana rate limit hit inside a batch",
            retryable=True,
            retry_after_ms=int((wait if wait is not None else 1.0) * 1000),
            status=429,
        )
    if status != 200:
        raise tracker_error(
            STATUS,
            f"asana batch action answered HTTP {status}",
            status=status,
            retryable=status >= 500,
        )
    body = result.get("body")
    return body.get("data") if isinstance(body, dict) else body


def _comment_view(story: Mapping[str, Any]) -> dict[str, Any] | None:
    if story.get("type") != "comment":
        return None
    author = story.get("created_by")
    name = author.get("name") if isinstance(author, dict) else None
    text = story.get("text")
    created = story.get("created_at")
    return {
        "id": story.get("gid") if isinstance(story.get("gid"), str) else None,
        "author": name if isinstance(name, str) else None,
        "body": cap_text(text, MAX_COMMENT_CHARS) if isinstance(text, str) else "",
        "created_at": created if isinstance(created, str) else None,
    }


def _why(exc: Exception) -> str:
    return exc.message if isinstance(exc, ValidationError) else str(exc)
