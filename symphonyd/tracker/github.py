"""GitHub Issues adapter over the REST API (profile: docs/trackers/github.md).

GitHub has two issue states, so workflow states come from labels: a closed issue is in
``closed_state``; an open issue is in the first configured ``state_labels`` entry it carries,
else in ``open_state``. The dispatch id is the issue number (stable inside the repository).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

from symphonyd.core.errors import TrackerError, ValidationError
from symphonyd.core.issue import BlockerRef, Issue, build_issue, state_key
from symphonyd.tracker.adapter import blocked
from symphonyd.tracker.errors import RESPONSE, config_error, tracker_error
from symphonyd.tracker.github_blockers import BlockerCache
from symphonyd.tracker.http import HttpPolicy, JsonResponse
from symphonyd.tracker.http_adapter import HttpTrackerAdapter
from symphonyd.tracker.provider_config import (
    HTTP_KEYS,
    check_keys,
    http_endpoint,
    http_policy,
    identifier_prefix,
    opt_int,
    opt_str,
    opt_str_list,
)
from symphonyd.tracker.rest_pages import label_names, link_pages

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.github.com"
DEFAULT_SECRET = "GITHUB_TOKEN"  # noqa: S105 (a variable name)
KEYS = (
    *HTTP_KEYS,
    "endpoint",
    "repository",
    "identifier_prefix",
    "state_labels",
    "open_state",
    "closed_state",
    "assignee",
    "blocked_label",
)
_REPO = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")


class GitHubAdapter(HttpTrackerAdapter):
    kind = "github"
    default_secret = DEFAULT_SECRET
    absent_statuses = (404, 410)

    def _configure(self, p: Mapping[str, Any]) -> tuple[tuple[str, ...], HttpPolicy]:
        check_keys(p, KEYS, self.kind)
        tool_states = opt_str_list(p, "tool_states")
        self.endpoint = http_endpoint(p, "endpoint", DEFAULT_ENDPOINT)
        repo = opt_str(p, "repository")
        if repo is None or not _REPO.match(repo) or ".." in repo:
            raise config_error("github needs tracker.provider.repository as 'owner/name'")
        self.repository = repo
        self.prefix = identifier_prefix(p, repo.split("/")[1])
        self.state_labels = opt_str_list(p, "state_labels")
        self.open_state = opt_str(p, "open_state", "Open") or "Open"
        self.closed_state = opt_str(p, "closed_state", "Closed") or "Closed"
        self.assignee = opt_str(p, "assignee")
        self.blocked_label = (opt_str(p, "blocked_label") or "").lower() or None
        self.page_size = opt_int(p, "page_size", 50, 1, 100)
        self._repo_url = f"{self.endpoint}/repos/{self.repository}"
        self._blockers = BlockerCache()
        return tool_states, http_policy(p)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "symphonyd-tracker",
        }

    # ------------------------------------------------------------------ reads

    async def _fetch_by_states(self, states: list[str]) -> list[Issue]:
        keys = {state_key(s) for s in states}
        label_keys = {state_key(label) for label in self.state_labels}
        want_open = state_key(self.open_state) in keys or bool(keys & label_keys)
        want_closed = state_key(self.closed_state) in keys
        if not want_open and not want_closed:
            return []  # no GitHub issue can be in a state this profile never produces
        gh_state = "all" if want_open and want_closed else "open" if want_open else "closed"
        params = {
            "state": gh_state,
            "per_page": str(self.page_size),
            "sort": "created",
            "direction": "asc",
        }
        if self.assignee:
            params["assignee"] = self.assignee
        out: list[Issue] = []
        for record in await self._pages(f"{self._repo_url}/issues", params):
            if isinstance(record, dict) and "pull_request" in record:
                continue
            try:
                issue = self._normalise(record)
            except ValidationError as exc:
                log.warning("github: omitting malformed issue record (%s)", exc.message)
                continue
            if state_key(issue.state) in keys:
                out.append(await self._with_blockers(issue, record))
        return out

    async def _pages(self, url: str, params: dict[str, str]) -> list[Any]:
        async def get(page_url: str, query: Any) -> JsonResponse:
            return await self._call("GET", page_url, params=query)

        return await link_pages(get, url, params, base=self.endpoint, name="github issue")

    async def _fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        out: list[Issue] = []
        for issue_id in ids:
            if not issue_id.isdigit() or len(issue_id) > 12:
                continue  # not an id this adapter ever hands out: not in scope
            resp = await self._call(
                "GET", f"{self._repo_url}/issues/{int(issue_id)}", absent=(301, 404, 410)
            )
            if resp.status != 200:
                continue
            if isinstance(resp.body, dict) and "pull_request" in resp.body:
                continue
            try:
                issue = self._normalise(resp.body)
            except ValidationError as exc:
                raise tracker_error(
                    RESPONSE,
                    "github returned a malformed record for a " f"requested issue: {exc.message}",
                ) from None
            if issue.id != issue_id:
                raise tracker_error(RESPONSE, "github answered with a different issue number")
            out.append(await self._with_blockers(issue, resp.body))
        return out

    async def _with_blockers(self, issue: Issue, record: Mapping[str, Any]) -> Issue:
        """The issue with its open blockers (GitHub issue dependencies), fetched only when
        the record's ``issue_dependencies_summary`` counts an open one; closed blockers
        cannot block (SPEC 8.2), so they cost no request. A blocker list that cannot be read
        counts as one blocker in an unknown state: the issue waits rather than runs early."""
        raw = record.get("issue_dependencies_summary")
        summary: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        open_count = summary.get("blocked_by")
        if isinstance(open_count, bool) or not isinstance(open_count, int) or open_count <= 0:
            return issue
        number = int(issue.id)
        key = (record.get("updated_at"), open_count, summary.get("total_blocked_by"))
        cached = self._blockers.get(number, key)
        try:
            if cached is not None:
                refs = cached
            else:
                url = f"{self._repo_url}/issues/{number}/dependencies/blocked_by"
                records = await self._pages(url, {"per_page": "100"})
                refs = tuple(self._blocker(r) for r in records) or (BlockerRef(),)
                self._blockers.put(number, key, refs)
        except TrackerError as exc:
            log.warning(
                "github: cannot read the blockers of %s (%s); holding it back",
                issue.identifier,
                exc.error_code,
            )
            refs = (BlockerRef(),)
        held = blocked(refs, self.settings.terminal_states)
        return dataclasses.replace(
            issue, blocked_by=refs, dispatchable=issue.dispatchable and not held
        )

    def _blocker(self, record: Any) -> BlockerRef:
        """One blocking issue, named like ours when it is in this repository."""
        if not isinstance(record, dict):
            return BlockerRef()
        number = record.get("number")
        if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
            return BlockerRef()
        repo_url = record.get("repository_url")
        other = repo_url.rsplit("/repos/", 1)[-1] if isinstance(repo_url, str) else None
        if other is None or other.lower() == self.repository.lower():
            ident, ref_id = f"{self.prefix}-{number}", str(number)
        else:
            ident = f"{other}#{number}"
            node = record.get("node_id")
            ref_id = node if isinstance(node, str) else ident
        state = self._state_of(record, label_names(record))
        return BlockerRef(
            id=ref_id, identifier=ident, state=state if isinstance(state, str) else None
        )

    def _state_of(self, record: Mapping[str, Any], labels: tuple[str, ...]) -> Any:
        if record.get("state") == "closed":
            return self.closed_state
        if record.get("state") != "open":
            return None
        have = set(labels)
        for label in self.state_labels:
            if label.strip().lower() in have:
                return label
        return self.open_state

    def _normalise(self, record: Any) -> Issue:
        if not isinstance(record, dict):
            raise ValidationError("issue record is not an object")
        number = record.get("number")
        if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
            raise ValidationError("issue field 'number' must be a positive integer")
        labels = label_names(record)
        assignee = record.get("assignee")
        login = assignee.get("login") if isinstance(assignee, dict) else None
        dispatchable = (
            (self.assignee is None or login == self.assignee)
            and (self.blocked_label is None or self.blocked_label not in labels)
            and record.get("state") == "open"
        )
        return build_issue(
            id=str(number),
            identifier=f"{self.prefix}-{number}",
            title=record.get("title"),
            state=self._state_of(record, labels),
            dispatchable=dispatchable,
            description=record.get("body"),
            url=record.get("html_url"),
            assignee_id=login,
            labels=labels,
            created_at=record.get("created_at"),
            updated_at=record.get("updated_at"),
            native_ref={
                k: v
                for k, v in (
                    ("repository", self.repository),
                    ("number", number),
                    (
                        "node_id",
                        record.get("node_id") if isinstance(record.get("node_id"), str) else None,
                    ),
                )
                if v is not None
            },
        )

    # ------------------------------------------------------------------ tools

    def _issue_url(self, issue: Issue) -> str:
        if not issue.id.isdigit():
            raise tracker_error(RESPONSE, "the run's issue id is not a GitHub issue number")
        return f"{self._repo_url}/issues/{int(issue.id)}"

    async def _comment(self, issue: Issue, body: str) -> dict[str, Any]:
        resp = await self._call(
            "POST",
            f"{self._issue_url(issue)}/comments",
            body={"body": body},
            idempotent=False,
            absent=(),
        )
        data = resp.body if isinstance(resp.body, dict) else {}
        return {"comment_id": data.get("id"), "url": data.get("html_url")}

    async def _move(self, issue: Issue, state: str) -> dict[str, Any]:
        resp = await self._call("GET", self._issue_url(issue), absent=())
        current = self._normalise(resp.body)
        state_keys = {label.strip().lower() for label in self.state_labels}
        kept = [label for label in current.labels if label not in state_keys]
        if state_key(state) == state_key(self.closed_state):
            patch: dict[str, Any] = {"state": "closed"}
        elif state_key(state) == state_key(self.open_state):
            patch = {"state": "open", "labels": kept}
        elif state_key(state) in state_keys:
            patch = {"state": "open", "labels": [*kept, state]}
        else:
            raise tracker_error(
                "invalid_tracker_config",
                f"{state!r} is neither open_state, " "closed_state nor one of state_labels",
            )
        resp = await self._call(
            "PATCH", self._issue_url(issue), body=patch, idempotent=False, absent=()
        )
        return {"state": self._normalise(resp.body).state}
