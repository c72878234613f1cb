"""Linear adapter: GraphQL over httpx with static documents (profile: docs/trackers/linear.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from symphonyd.core.api.tracker import ToolResult, ToolSpec
from symphonyd.core.errors import ValidationError
from symphonyd.core.issue import BlockerRef, Issue, build_issue
from symphonyd.tracker import linear_queries as q
from symphonyd.tracker import tools
from symphonyd.tracker.adapter import blocked
from symphonyd.tracker.errors import PAGINATION, RESPONSE, tracker_error
from symphonyd.tracker.http import HttpPolicy, JsonResponse, RateLimited
from symphonyd.tracker.http_adapter import HttpTrackerAdapter
from symphonyd.tracker.provider_config import (
    HTTP_KEYS,
    check_keys,
    http_endpoint,
    http_policy,
    opt_bool,
    opt_int,
    opt_str,
    opt_str_list,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.linear.app/graphql"
DEFAULT_SECRET = "LINEAR_API_KEY"  # noqa: S105 (a variable name)
GRAPHQL_TOOL = "linear_graphql"
MAX_PAGES = 10_000
KEYS = (
    *HTTP_KEYS,
    "endpoint",
    "project_slug",
    "team_key",
    "assignee",
    "id_batch_size",
    "graphql_tool",
)
_TERMINAL_TYPES = ("completed", "canceled")


class LinearAdapter(HttpTrackerAdapter):
    kind = "linear"
    default_secret = DEFAULT_SECRET
    absent_statuses = (404, 410)

    def _configure(self, p: Mapping[str, Any]) -> tuple[tuple[str, ...], HttpPolicy]:
        check_keys(p, KEYS, self.kind)
        tool_states = opt_str_list(p, "tool_states")
        self.endpoint = http_endpoint(p, "endpoint", DEFAULT_ENDPOINT)
        self.project_slug = opt_str(p, "project_slug")
        self.team_key = opt_str(p, "team_key")
        if self.project_slug is None and self.team_key is None:
            raise tracker_error(
                "invalid_tracker_config", "linear needs tracker.provider.project_slug or team_key"
            )
        self.assignee = opt_str(p, "assignee")
        self.page_size = opt_int(p, "page_size", 50, 1, 250)
        self.id_batch_size = opt_int(p, "id_batch_size", 50, 1, 250)
        self.graphql_tool = opt_bool(p, "graphql_tool", False)
        self._viewer_id: str | None = None
        return tool_states, http_policy(p)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token.reveal(), "Content-Type": "application/json"}

    # ------------------------------------------------------------------ transport

    async def _graphql(
        self, document: str, variables: dict[str, Any], *, idempotent: bool = True
    ) -> dict[str, Any]:
        resp = await self._call(
            "POST",
            self.endpoint,
            body={"query": document, "variables": variables},
            idempotent=idempotent,
            body_check=_graphql_rate_limit,
        )
        body = resp.body
        if resp.status != 200 or not isinstance(body, dict):
            raise tracker_error(
                RESPONSE,
                f"linear answered HTTP {resp.status} without a " "GraphQL result object",
                status=resp.status,
            )
        errors = body.get("errors")
        if errors:
            message = self.redact(_first_error(errors))[:200]
            raise tracker_error(RESPONSE, f"linear GraphQL error: {message}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise tracker_error(RESPONSE, "linear response has no data object")
        return data

    async def _pages(self, filter_: dict[str, Any], first: int) -> list[Any]:
        nodes: list[Any] = []
        after: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            data = await self._graphql(
                q.ISSUES_PAGE, {"filter": filter_, "first": first, "after": after}
            )
            conn = data.get("issues")
            if not isinstance(conn, dict) or not isinstance(conn.get("nodes"), list):
                raise tracker_error(RESPONSE, "linear response lacks issues.nodes")
            nodes.extend(conn["nodes"])
            info = conn.get("pageInfo")
            if not isinstance(info, dict) or not isinstance(info.get("hasNextPage"), bool):
                raise tracker_error(PAGINATION, "linear response lacks pageInfo.hasNextPage")
            if not info["hasNextPage"]:
                return nodes
            cursor = info.get("endCursor")
            if not isinstance(cursor, str) or not cursor or cursor in seen:
                raise tracker_error(
                    PAGINATION,
                    "linear said there is a next page but gave no "
                    "new endCursor; refusing a partial result",
                )
            seen.add(cursor)
            after = cursor
        raise tracker_error(PAGINATION, f"linear pagination exceeded {MAX_PAGES} pages")

    def _scope(self) -> dict[str, Any]:
        scope: dict[str, Any] = {}
        if self.project_slug:
            scope["project"] = {"slugId": {"eq": self.project_slug}}
        if self.team_key:
            scope["team"] = {"key": {"eq": self.team_key}}
        return scope

    # ------------------------------------------------------------------ reads

    async def _fetch_by_states(self, states: list[str]) -> list[Issue]:
        nodes = await self._pages(
            {**self._scope(), "state": {"name": {"in": states}}}, self.page_size
        )
        assignee = await self._assignee_id()
        out: list[Issue] = []
        for node in nodes:
            try:
                out.append(self._normalise(node, assignee))
            except ValidationError as exc:
                log.warning("linear: omitting malformed issue record (%s)", exc.message)
        return out

    async def _fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        assignee = await self._assignee_id()
        out: list[Issue] = []
        for start in range(0, len(ids), self.id_batch_size):
            batch = ids[start : start + self.id_batch_size]
            nodes = await self._pages({**self._scope(), "id": {"in": batch}}, len(batch))
            for node in nodes:
                try:
                    out.append(self._normalise(node, assignee))
                except ValidationError as exc:
                    raise tracker_error(
                        RESPONSE,
                        "linear returned a malformed record for a "
                        f"requested issue: {exc.message}",
                    ) from None
        return out

    async def _assignee_id(self) -> str | None:
        if self.assignee != "me":
            return self.assignee
        if self._viewer_id is None:
            viewer = (await self._graphql(q.VIEWER, {})).get("viewer")
            if not isinstance(viewer, dict) or not isinstance(viewer.get("id"), str):
                raise tracker_error(RESPONSE, "linear viewer query returned no id")
            self._viewer_id = viewer["id"]
        return self._viewer_id

    def _normalise(self, node: Any, assignee: str | None) -> Issue:
        if not isinstance(node, dict):
            raise ValidationError("issue record is not an object")
        state = _obj(node.get("state"))
        relations = _blockers(node.get("inverseRelations"))
        blockers = tuple(ref for ref, _ in relations)
        open_blockers = [ref for ref, done in relations if not done]
        assignee_id = _nested_str(node, "assignee", "id")
        dispatchable = not blocked(open_blockers, self.settings.terminal_states) and (
            assignee is None or assignee_id == assignee
        )
        priority = node.get("priority")
        return build_issue(
            id=node.get("id"),
            identifier=node.get("identifier"),
            title=node.get("title"),
            state=state.get("name"),
            dispatchable=dispatchable,
            description=node.get("description"),
            # Linear's 0 means "no priority"; 1 (urgent) .. 4 (low) keep their meaning.
            priority=None if priority == 0 else priority,
            branch_name=node.get("branchName"),
            url=node.get("url"),
            assignee_id=assignee_id,
            labels=_label_names(node.get("labels")),
            blocked_by=blockers,
            created_at=node.get("createdAt"),
            updated_at=node.get("updatedAt"),
            native_ref={
                k: v
                for k, v in (
                    ("team_id", _nested_str(node, "team", "id")),
                    ("team_key", _nested_str(node, "team", "key")),
                    ("project_id", _nested_str(node, "project", "id")),
                    ("state_id", state.get("id") if isinstance(state.get("id"), str) else None),
                )
                if v is not None
            },
        )

    # ------------------------------------------------------------------ tools

    async def _comment(self, issue: Issue, body: str) -> dict[str, Any]:
        data = await self._graphql(
            q.COMMENT_CREATE, {"issueId": issue.id, "body": body}, idempotent=False
        )
        result = data.get("commentCreate")
        if not isinstance(result, dict) or result.get("success") is not True:
            raise tracker_error(RESPONSE, "linear did not confirm the comment")
        comment = _obj(result.get("comment"))
        return {"comment_id": comment.get("id"), "url": comment.get("url")}

    async def _move(self, issue: Issue, state: str) -> dict[str, Any]:
        data = await self._graphql(q.TEAM_STATES, {"issueId": issue.id})
        states = _obj(_obj(_obj(data.get("issue")).get("team")).get("states")).get("nodes")
        if not isinstance(states, list):
            raise tracker_error(RESPONSE, "linear returned no workflow states for the issue")
        match = [
            s
            for s in states
            if isinstance(s, dict)
            and isinstance(s.get("name"), str)
            and s["name"].strip().lower() == state.lower()
            and isinstance(s.get("id"), str)
        ]
        if not match:
            raise tools.ToolFailure(
                f"the issue's team has no state named {state!r}", code="unknown_state"
            )
        data = await self._graphql(
            q.ISSUE_MOVE, {"issueId": issue.id, "stateId": match[0]["id"]}, idempotent=False
        )
        result = data.get("issueUpdate")
        if not isinstance(result, dict) or result.get("success") is not True:
            raise tracker_error(RESPONSE, "linear did not confirm the state change")
        return {"state": match[0]["name"]}

    def _extra_tool_specs(self) -> list[ToolSpec]:
        if not self.graphql_tool:
            return []
        return [
            ToolSpec(
                GRAPHQL_TOOL,
                "Run one of a fixed set of read-only Linear GraphQL queries about this run's "
                "issue. Name it with 'operation', or pass its exact text as 'query'; the issue "
                "is always this run's issue. Other queries and mutations are refused.",
                {
                    "type": "object",
                    "properties": {
                        "operation": {"type": "string", "enum": sorted(q.GRAPHQL_TOOL_DOCUMENTS)},
                        "query": {"type": "string"},
                        "variables": {
                            "type": "object",
                            "properties": {
                                "issueId": {"type": "string"},
                                "first": {"type": "integer", "minimum": 1, "maximum": 100},
                            },
                            "additionalProperties": False,
                        },
                    },
                    "additionalProperties": False,
                },
            )
        ]

    async def _extra_tool(
        self, name: str, arguments: Any, issue: Issue, session_id: str | None
    ) -> ToolResult:
        if name != GRAPHQL_TOOL:
            return await super()._extra_tool(name, arguments, issue, session_id)
        args = tools.arguments_object(arguments, {"operation", "query", "variables"})
        document = _allowed_document(args.get("operation"), args.get("query"))
        variables = tools.arguments_object(args.get("variables"), {"issueId", "first"})
        if variables.get("issueId", issue.id) != issue.id:
            raise tools.ToolFailure(
                "linear_graphql only reads the issue of this run", code="issue_out_of_scope"
            )
        first = variables.get("first", 50)
        if isinstance(first, bool) or not isinstance(first, int) or not 1 <= first <= 100:
            raise tools.ToolFailure("'first' must be an integer in [1, 100]")
        data = await self._graphql(document, {"issueId": issue.id, "first": first})
        return ToolResult(True, {"data": data})


def _allowed_document(operation: Any, query: Any) -> str:
    if (operation is None) == (query is None):
        raise tools.ToolFailure("give exactly one of 'operation' or 'query'")
    if operation is not None:
        document = q.GRAPHQL_TOOL_DOCUMENTS.get(operation) if isinstance(operation, str) else None
        if document is None:
            raise tools.ToolFailure(
                f"unknown operation; known: {', '.join(sorted(q.GRAPHQL_TOOL_DOCUMENTS))}",
                code="operation_not_allowed",
            )
        return document
    if not isinstance(query, str):
        raise tools.ToolFailure("'query' must be a string")
    wanted = " ".join(query.split())
    for document in q.GRAPHQL_TOOL_DOCUMENTS.values():
        if " ".join(document.split()) == wanted:
            return document
    raise tools.ToolFailure(
        "linear_graphql only runs its fixed read-only queries (see the 'operation' enum)",
        code="operation_not_allowed",
    )


def _graphql_rate_limit(resp: JsonResponse) -> None:
    body = resp.body
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        for err in body["errors"]:
            ext = err.get("extensions") if isinstance(err, dict) else None
            if isinstance(ext, dict) and ext.get("code") == "RATELIMITED":
                raise RateLimited(resp.headers)


def _first_error(errors: Any) -> str:
    first = errors[0] if isinstance(errors, list) and errors else errors
    message = first.get("message") if isinstance(first, dict) else None
    return str(message)[:4096] if message else "unspecified"


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _nested_str(node: Mapping[str, Any], outer: str, inner: str) -> str | None:
    value = node.get(outer)
    found = value.get(inner) if isinstance(value, dict) else None
    return found if isinstance(found, str) and found else None


def _label_names(raw: Any) -> list[Any]:
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    if not isinstance(nodes, list):
        return []
    return [n.get("name") for n in nodes if isinstance(n, dict)]


def _blockers(raw: Any) -> list[tuple[BlockerRef, bool]]:
    """Blocker refs, each with whether Linear itself calls it completed or canceled."""
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    out: list[tuple[BlockerRef, bool]] = []
    for rel in nodes if isinstance(nodes, list) else []:
        if not isinstance(rel, dict) or rel.get("type") != "blocks":
            continue
        other = rel.get("issue")
        if not isinstance(other, dict):
            continue
        state = _obj(other.get("state"))
        name = state.get("name") if isinstance(state.get("name"), str) else None
        ref = BlockerRef(
            id=other.get("id") if isinstance(other.get("id"), str) else None,
            identifier=other.get("identifier")
            if isinstance(other.get("identifier"), str)
            else None,
            state=name,
        )
        out.append((ref, state.get("type") in _TERMINAL_TYPES))
    return out
