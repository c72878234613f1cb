"""Jira Cloud adapter over REST API v3 (profile: docs/trackers/jira.md).

Scope is one project (``project``), optionally narrowed by an operator JQL filter. The dispatch
id is Jira's numeric issue id (it survives a key change when an issue moves project); the
identifier is the key. State is the status name; a done-category status is never
dispatchable, and an "is blocked by" link to an issue outside the done category and the
terminal states holds the issue back. Reads are one JQL search per poll and one per refresh
batch, paged with ``nextPageToken``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from symphonyd.core.api.tracker import ToolResult
from symphonyd.core.errors import ValidationError
from symphonyd.core.issue import BlockerRef, Issue, build_issue, state_key
from symphonyd.tracker.errors import PAGINATION, RESPONSE, STATUS, config_error, tracker_error
from symphonyd.tracker.http import HttpPolicy
from symphonyd.tracker.http_adapter import HttpTrackerAdapter
from symphonyd.tracker.jira_format import (
    adf_document,
    adf_text,
    basic_credential,
    check_jql_filter,
    comment_view,
    jira_timestamp,
    jql_list,
    jql_string,
    status_of,
)
from symphonyd.tracker.provider_config import (
    HTTP_KEYS,
    check_keys,
    http_endpoint,
    http_policy,
    opt_int,
    opt_str,
    opt_str_list,
)
from symphonyd.tracker.secret import Secret
from symphonyd.tracker.tools import ToolFailure

log = logging.getLogger(__name__)

DEFAULT_SECRET = "JIRA_API_TOKEN"  # noqa: S105 (a variable name)
DEFAULT_PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
MAX_PAGES = 10_000
REFRESH_BATCH = 100
READ_COMMENTS = 50
FIELDS = [
    "summary", "status", "labels", "priority", "issuelinks", "description",
    "assignee", "created", "updated",
]  # fmt: skip
KEYS = (
    *HTTP_KEYS,
    "site",
    "project",
    "jql",
    "priorities",
    "blocks_link_type",
)
_PROJECT = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
_ID = re.compile(r"^[0-9]{1,18}$")


class JiraAdapter(HttpTrackerAdapter):
    kind = "jira"
    default_secret = DEFAULT_SECRET

    def _configure(self, p: Mapping[str, Any]) -> tuple[tuple[str, ...], HttpPolicy]:
        check_keys(p, KEYS, self.kind)
        tool_states = opt_str_list(p, "tool_states")
        if "site" not in p:
            raise config_error("jira needs tracker.provider.site, e.g. https://acme.atlassian.net")
        self.site = http_endpoint(p, "site", "")
        project = opt_str(p, "project")
        if project is None or not _PROJECT.match(project):
            raise config_error(
                "jira needs tracker.provider.project as a project key ([A-Z][A-Z0-9_]*)"
            )
        self.project = project
        jql = opt_str(p, "jql")
        self.jql = check_jql_filter(jql) if jql is not None else None
        self.priorities = tuple(s.lower() for s in opt_str_list(p, "priorities")) or tuple(
            s.lower() for s in DEFAULT_PRIORITIES
        )
        self.link_type = (opt_str(p, "blocks_link_type", "Blocks") or "Blocks").lower()
        self.page_size = opt_int(p, "page_size", 50, 1, 100)
        self._api = f"{self.site}/rest/api/3"
        return tool_states, http_policy(p)

    def _credential_ready(self) -> None:
        raw = self._token
        self.email, self._auth = basic_credential(raw, self._secret_names[0])
        token = raw.reveal().rpartition(":")[2].strip()
        # The whole credential, the bare token and the header each count as the secret.
        self.secrets = (raw, Secret(token), self._auth)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": self._auth.reveal(),
            "Accept": "application/json",
            "User-Agent": "symphonyd-tracker",
        }

    # ------------------------------------------------------------------ reads

    async def _fetch_by_states(self, states: list[str]) -> list[Issue]:
        jql = f"project = {jql_string(self.project)} AND status in {jql_list(states)}"
        if self.jql:
            jql += f" AND ({self.jql})"
        keys = {state_key(s) for s in states}
        out: list[Issue] = []
        for record in await self._search(jql + " ORDER BY created ASC, key ASC") or []:
            try:
                issue = self._normalise(record)
            except ValidationError as exc:
                log.warning("jira: omitting malformed issue record (%s)", exc.message)
                continue
            if state_key(issue.state) in keys:
                out.append(issue)
        return out

    async def _fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        wanted = [i for i in ids if _ID.match(i)]  # other ids were never handed out here
        out: list[Issue] = []
        for start in range(0, len(wanted), REFRESH_BATCH):
            out.extend(await self._refresh(wanted[start : start + REFRESH_BATCH]))
        return out

    async def _refresh(self, ids: list[str]) -> list[Issue]:
        """One JQL query for the batch. Jira refuses a whole query (400) when one id in it no
        longer exists, so only then does it fall back to one query per id, where a 400 means
        that issue is gone."""
        jql = f"project = {jql_string(self.project)} AND id in ({', '.join(ids)})"
        records = await self._search(jql, gone_ok=True)
        if records is None:
            if len(ids) == 1:
                return []
            out: list[Issue] = []
            for one in ids:
                out.extend(await self._refresh([one]))
            return out
        found: list[Issue] = []
        for record in records:
            try:
                found.append(self._normalise(record))
            except ValidationError as exc:
                raise tracker_error(
                    RESPONSE,
                    f"jira returned a malformed record for a requested issue: {exc.message}",
                ) from None
        return found

    async def _search(self, jql: str, *, gone_ok: bool = False) -> list[Any] | None:
        """Every issue of a JQL search, following ``nextPageToken`` (the v3 search/jql
        endpoint has no offsets). ``gone_ok``: a 400 answer returns None instead of raising."""
        records: list[Any] = []
        token: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            body: dict[str, Any] = {"jql": jql, "maxResults": self.page_size, "fields": FIELDS}
            if token is not None:
                body["nextPageToken"] = token
            resp = await self._call("POST", f"{self._api}/search/jql", body=body, absent=(400,))
            if resp.status == 400 and gone_ok:
                return None
            if resp.status == 400:
                # Jira refuses a JQL naming a status it does not have; say where to look.
                raise tracker_error(
                    STATUS,
                    "jira refused the search (HTTP 400): every state asked for (active_states, "
                    "terminal_states) must be a status of the project, and "
                    "tracker.provider.jql must be valid JQL",
                    status=400,
                )
            page = resp.body if isinstance(resp.body, dict) else None
            issues = page.get("issues") if page is not None else None
            if page is None or not isinstance(issues, list):
                raise tracker_error(RESPONSE, "jira search answered without an 'issues' list")
            records.extend(issues)
            nxt = page.get("nextPageToken")
            if page.get("isLast") is True or (nxt is None and "isLast" not in page):
                return records
            if not isinstance(nxt, str) or not nxt:
                raise tracker_error(PAGINATION, "jira promised another page without a token")
            if nxt in seen:
                raise tracker_error(PAGINATION, "jira pagination returned a page token twice")
            seen.add(nxt)
            token = nxt
        raise tracker_error(PAGINATION, f"jira pagination exceeded {MAX_PAGES} pages")

    def _normalise(self, record: Any) -> Issue:
        if not isinstance(record, dict):
            raise ValidationError("issue record is not an object")
        issue_id, key = record.get("id"), record.get("key")
        if not isinstance(issue_id, str) or not _ID.match(issue_id):
            raise ValidationError("issue field 'id' must be a numeric string")
        if not isinstance(key, str) or not re.fullmatch(rf"{self.project}-[0-9]{{1,18}}", key):
            raise ValidationError(f"issue key is not one of project {self.project}")
        fields = record.get("fields")
        if not isinstance(fields, dict):
            raise ValidationError("issue field 'fields' must be an object")
        state, category = status_of(fields.get("status"))
        blockers = self._blockers(fields.get("issuelinks"))
        terminal = {state_key(s) for s in self.settings.terminal_states}
        held = any(
            cat != "done" and (b.state is None or state_key(b.state) not in terminal)
            for b, cat in blockers
        )
        assignee = fields.get("assignee")
        return build_issue(
            id=issue_id,
            identifier=key,
            title=fields.get("summary"),
            state=state,
            dispatchable=category != "done" and not held,
            description=adf_text(fields.get("description")),
            priority=self._priority(fields.get("priority")),
            url=f"{self.site}/browse/{key}",
            assignee_id=assignee.get("accountId") if isinstance(assignee, dict) else None,
            labels=fields.get("labels") if isinstance(fields.get("labels"), list) else (),
            blocked_by=[b for b, _ in blockers],
            created_at=jira_timestamp(fields.get("created")),
            updated_at=jira_timestamp(fields.get("updated")),
            native_ref={"id": issue_id, "key": key, "project": self.project},
        )

    def _priority(self, raw: Any) -> int | None:
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str) or name.strip().lower() not in self.priorities:
            return None
        return self.priorities.index(name.strip().lower()) + 1

    def _blockers(self, links: Any) -> list[tuple[BlockerRef, str | None]]:
        """Issues this one "is blocked by": links of the blocks type whose other end is the
        inward issue. A malformed link still counts, as a blocker in an unknown state."""
        out: list[tuple[BlockerRef, str | None]] = []
        for link in links if isinstance(links, list) else []:
            if not isinstance(link, dict) or "inwardIssue" not in link:
                continue
            kind = link.get("type")
            name = kind.get("name") if isinstance(kind, dict) else None
            if not isinstance(name, str) or name.strip().lower() != self.link_type:
                continue
            other = link["inwardIssue"]
            if not isinstance(other, dict):
                out.append((BlockerRef(), None))
                continue
            fields = other.get("fields")
            state, category = status_of(fields.get("status") if isinstance(fields, dict) else None)
            ref_id, ref_key = other.get("id"), other.get("key")
            out.append(
                (
                    BlockerRef(
                        id=ref_id if isinstance(ref_id, str) else None,
                        identifier=ref_key if isinstance(ref_key, str) else None,
                        state=state if isinstance(state, str) else None,
                    ),
                    category,
                )
            )
        return out

    # ------------------------------------------------------------------ tools

    def _issue_url(self, issue: Issue) -> str:
        if not _ID.match(issue.id):
            raise tracker_error(RESPONSE, "the run's issue id is not a Jira issue id")
        return f"{self._api}/issue/{issue.id}"

    async def _read(self, issue: Issue) -> ToolResult:
        result = await super()._read(issue)
        if not result.success:
            return result
        resp = await self._call(
            "GET",
            f"{self._issue_url(issue)}/comment",
            params={"orderBy": "-created", "maxResults": str(READ_COMMENTS)},
            absent=(),
        )
        raw = resp.body.get("comments") if isinstance(resp.body, dict) else None
        if not isinstance(raw, list):
            raise tracker_error(RESPONSE, "jira comment list answered without 'comments'")
        comments = [comment_view(c) for c in raw[:READ_COMMENTS] if isinstance(c, dict)]
        comments.reverse()  # oldest first, like a thread
        return ToolResult(True, {**result.output, "comments": comments})

    async def _comment(self, issue: Issue, body: str) -> dict[str, Any]:
        resp = await self._call(
            "POST",
            f"{self._issue_url(issue)}/comment",
            body={"body": adf_document(body)},
            idempotent=False,
            absent=(),
        )
        data = resp.body if isinstance(resp.body, dict) else {}
        cid = data.get("id") if isinstance(data.get("id"), str) else None
        url = f"{self.site}/browse/{issue.identifier}"
        return {"comment_id": cid, "url": f"{url}?focusedCommentId={cid}" if cid else url}

    async def _move(self, issue: Issue, state: str) -> dict[str, Any]:
        """Jira moves issues only along workflow transitions: pick the one available now
        whose target status is the wanted state (case-insensitive)."""
        url = f"{self._issue_url(issue)}/transitions"
        resp = await self._call("GET", url, absent=())
        raw = resp.body.get("transitions") if isinstance(resp.body, dict) else None
        if not isinstance(raw, list):
            raise tracker_error(RESPONSE, "jira transitions answered without 'transitions'")
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            target = item.get("to")
            name = target.get("name") if isinstance(target, dict) else None
            if isinstance(name, str) and state_key(name) == state_key(state):
                await self._call(
                    "POST",
                    url,
                    body={"transition": {"id": item["id"]}},
                    idempotent=False,
                    ok=(204, 200),
                    absent=(),
                )
                return {"state": name.strip()}
        raise ToolFailure(
            f"no transition from {issue.state[:80]!r} to {state[:80]!r} is available in the "
            "Jira workflow for this issue now",
            code="unknown_state",
        )
