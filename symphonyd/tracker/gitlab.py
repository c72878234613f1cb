"""GitLab issues adapter over REST v4, gitlab.com or self-managed (docs/trackers/gitlab.md).

GitLab issues are opened or closed; workflow states come from labels, typically scoped ones
(``status::in-progress``). A closed issue is in ``closed_state``; an open issue is in the
state of the first configured ``state_labels`` entry whose label it carries, else in
``open_state``. The dispatch id is the issue's ``iid`` (stable inside the project).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

from symphonyd.core.api.tracker import ToolResult
from symphonyd.core.errors import TrackerError, ValidationError
from symphonyd.core.issue import BlockerRef, Issue, build_issue, cap_text, state_key
from symphonyd.tracker.adapter import blocked
from symphonyd.tracker.errors import RESPONSE, tracker_error
from symphonyd.tracker.github_blockers import BlockerCache
from symphonyd.tracker.gitlab_config import DEFAULT_SECRET, parse_gitlab_provider
from symphonyd.tracker.http import HttpPolicy, JsonResponse
from symphonyd.tracker.http_adapter import HttpTrackerAdapter
from symphonyd.tracker.rest_pages import label_names, link_pages

log = logging.getLogger(__name__)

# The canonical decimal form _normalise produces; "012" or non-ASCII digits would come back
# under another id and fail the refresh.
_IID = re.compile(r"^[1-9][0-9]{0,11}\Z")
ID_BATCH = 100  # GitLab's largest per_page, so one request per 100 refreshed ids
NOTES_SHOWN = 50
MAX_NOTE_CHARS = 10_000


class GitLabAdapter(HttpTrackerAdapter):
    kind = "gitlab"
    default_secret = DEFAULT_SECRET

    def _configure(self, p: Mapping[str, Any]) -> tuple[tuple[str, ...], HttpPolicy]:
        cfg = parse_gitlab_provider(p)
        self.cfg = cfg
        self._labels_of_state = {state_key(s): label for s, label in cfg.state_labels}
        self._blockers = BlockerCache()
        # Names blockers in this project like its own issues; learnt from the first record
        # when the project is configured by path.
        self._project_id = int(cfg.project) if "/" not in cfg.project else None
        return cfg.tool_states, cfg.policy

    def _headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self._token.reveal(), "User-Agent": "symphonyd-tracker"}

    # ------------------------------------------------------------------ reads

    async def _fetch_by_states(self, states: list[str]) -> list[Issue]:
        keys = {state_key(s) for s in states}
        want_open = state_key(self.cfg.open_state) in keys or bool(
            keys & set(self._labels_of_state)
        )
        want_closed = state_key(self.cfg.closed_state) in keys
        if not want_open and not want_closed:
            return []  # no GitLab issue can be in a state this profile never produces
        params: list[tuple[str, str]] = [("per_page", str(self.cfg.page_size))]
        if not (want_open and want_closed):
            params.append(("state", "opened" if want_open else "closed"))
        if self.cfg.assignee:
            params.append(("assignee_username", self.cfg.assignee))
        out: list[Issue] = []
        for record in await self._pages(f"{self.cfg.api}/issues", params):
            try:
                issue = self._normalise(record)
            except ValidationError as exc:
                log.warning("gitlab: omitting malformed issue record (%s)", exc.message)
                continue
            if state_key(issue.state) in keys:
                out.append(await self._with_blockers(issue))
        return out

    async def _fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        iids = [i for i in ids if _IID.match(i)]  # others are ids this adapter never gave
        out: list[Issue] = []
        for start in range(0, len(iids), ID_BATCH):
            batch = iids[start : start + ID_BATCH]
            params = [("state", "all"), ("per_page", str(ID_BATCH))]
            params += [("iids[]", i) for i in batch]
            for record in await self._pages(f"{self.cfg.api}/issues", params):
                try:
                    issue = self._normalise(record)
                except ValidationError as exc:
                    raise tracker_error(
                        RESPONSE,
                        f"gitlab returned a malformed record for a requested issue: {exc.message}",
                    ) from None
                out.append(await self._with_blockers(issue))
        return out

    async def _pages(
        self, url: str, params: list[tuple[str, str]], *, ordered: bool = True
    ) -> list[Any]:
        """Every page of a list, following ``Link: rel="next"`` (keyset and offset alike)."""
        first = list(params)
        if ordered:
            first += [("order_by", "created_at"), ("sort", "asc")]
            if self.cfg.pagination == "keyset":
                first.append(("pagination", "keyset"))

        async def get(page_url: str, query: Any) -> JsonResponse:
            return await self._call("GET", page_url, params=query, absent=())

        # The token follows the links, so they must stay on this project's API.
        return await link_pages(get, url, first, base=self.cfg.api, name="gitlab")

    async def _with_blockers(self, issue: Issue) -> Issue:
        """The issue with its blockers from issue links (``is_blocked_by``), read only for an
        open issue that could otherwise be dispatched. A link list that cannot be read counts
        as one blocker in an unknown state: the issue waits rather than runs early."""
        if self.cfg.blockers != "links" or not issue.dispatchable:
            return issue
        if state_key(issue.state) not in {state_key(s) for s in self.settings.active_states}:
            return issue
        iid = int(issue.id)
        key = issue.updated_at
        refs = self._blockers.get(iid, key)
        if refs is None:
            try:
                links = await self._pages(f"{self.cfg.api}/issues/{iid}/links", [], ordered=False)
                refs = tuple(
                    self._blocker(link)
                    for link in links
                    if isinstance(link, dict) and link.get("link_type") == "is_blocked_by"
                )
                self._blockers.put(iid, key, refs)
            except TrackerError as exc:
                log.warning(
                    "gitlab: cannot read the links of %s (%s); holding it back",
                    issue.identifier,
                    exc.error_code,
                )
                refs = (BlockerRef(),)
        held = blocked(refs, self.settings.terminal_states)
        return dataclasses.replace(issue, blocked_by=refs, dispatchable=not held)

    def _blocker(self, record: Mapping[str, Any]) -> BlockerRef:
        """One blocking issue, named like ours when it is in this project."""
        iid = record.get("iid")
        if isinstance(iid, bool) or not isinstance(iid, int) or iid <= 0:
            return BlockerRef()
        project_id = record.get("project_id")
        if self._project_id is not None and project_id == self._project_id:
            ident, ref_id = f"{self.cfg.prefix}-{iid}", str(iid)
        else:
            refs = record.get("references")
            full = refs.get("full") if isinstance(refs, dict) else None
            ident = full[:300] if isinstance(full, str) and full else f"{project_id}#{iid}"
            ref_id = str(record["id"]) if isinstance(record.get("id"), int) else ident
        state = self._state_of(record, label_names(record))
        return BlockerRef(id=ref_id, identifier=ident, state=state)

    def _state_of(self, record: Mapping[str, Any], labels: tuple[str, ...]) -> str | None:
        if record.get("state") == "closed":
            return self.cfg.closed_state
        if record.get("state") != "opened":
            return None
        have = set(labels)
        for state, label in self.cfg.state_labels:
            if label.lower() in have:
                return state
        return self.cfg.open_state

    def _priority(self, labels: tuple[str, ...]) -> int | None:
        """The smallest N among ``<priority_label_prefix>N`` labels (1 is the most urgent)."""
        prefix = self.cfg.priority_prefix
        if prefix is None:
            return None
        found = [
            int(rest)
            for label in labels
            if label.startswith(prefix)
            and (rest := label[len(prefix) :].strip()).isdigit()
            and len(rest) <= 6
        ]
        return min(found) if found else None

    def _normalise(self, record: Any) -> Issue:
        if not isinstance(record, dict):
            raise ValidationError("issue record is not an object")
        iid = record.get("iid")
        if isinstance(iid, bool) or not isinstance(iid, int) or not 0 < iid < 10**12:
            raise ValidationError("issue field 'iid' must be a positive integer")
        project_id = record.get("project_id")
        if self._project_id is None and isinstance(project_id, int) and project_id > 0:
            self._project_id = project_id
        labels = label_names(record)
        assignees = record.get("assignees")
        usernames = [
            a.get("username")
            for a in (assignees if isinstance(assignees, list) else [])
            if isinstance(a, dict) and isinstance(a.get("username"), str)
        ]
        dispatchable = (
            (self.cfg.assignee is None or self.cfg.assignee in usernames)
            and (self.cfg.blocked_label is None or self.cfg.blocked_label not in labels)
            and record.get("state") == "opened"
        )
        refs = record.get("references")
        full = refs.get("full") if isinstance(refs, dict) else None
        return build_issue(
            id=str(iid),
            identifier=f"{self.cfg.prefix}-{iid}",
            title=record.get("title"),
            state=self._state_of(record, labels),
            dispatchable=dispatchable,
            description=record.get("description"),
            priority=self._priority(labels),
            url=record.get("web_url"),
            assignee_id=usernames[0] if usernames else None,
            labels=labels,
            created_at=record.get("created_at"),
            updated_at=record.get("updated_at"),
            native_ref={
                k: v
                for k, v in (
                    ("project", self.cfg.project),
                    ("iid", iid),
                    ("id", record.get("id") if isinstance(record.get("id"), int) else None),
                    ("reference", full[:300] if isinstance(full, str) else None),
                )
                if v is not None
            },
        )

    # ------------------------------------------------------------------ tools

    def _issue_url(self, issue: Issue) -> str:
        if not _IID.match(issue.id):
            raise tracker_error(RESPONSE, "the run's issue id is not a GitLab issue iid")
        return f"{self.cfg.api}/issues/{int(issue.id)}"

    async def _read(self, issue: Issue) -> ToolResult:
        """The issue and its latest notes (oldest first), system notes marked as such."""
        result = await super()._read(issue)
        if not result.success:
            return result
        resp = await self._call(
            "GET",
            f"{self._issue_url(issue)}/notes",
            params={"sort": "desc", "order_by": "created_at", "per_page": str(NOTES_SHOWN)},
            absent=(),
        )
        if not isinstance(resp.body, list):
            raise tracker_error(RESPONSE, "gitlab notes answered without a JSON array")
        notes = [_note(n) for n in reversed(resp.body) if isinstance(n, dict)]
        return ToolResult(True, {**result.output, "comments": notes})

    async def _comment(self, issue: Issue, body: str) -> dict[str, Any]:
        resp = await self._call(
            "POST",
            f"{self._issue_url(issue)}/notes",
            body={"body": body},
            idempotent=False,
            absent=(),
        )
        data = resp.body if isinstance(resp.body, dict) else {}
        note_id = data.get("id") if isinstance(data.get("id"), int) else None
        return {"comment_id": note_id, "url": issue.url and f"{issue.url}#note_{note_id}"}

    async def _move(self, issue: Issue, state: str) -> dict[str, Any]:
        """One PUT: the state event plus label edits, so labels it does not own are kept."""
        target = state_key(state)
        state_labels = [label for _, label in self.cfg.state_labels]
        if target == state_key(self.cfg.closed_state):
            update: dict[str, Any] = {"state_event": "close"}
        else:
            keep = self._labels_of_state.get(target)
            update = {"state_event": "reopen"}
            drop = [label for label in state_labels if label != keep]
            if drop:
                update["remove_labels"] = ",".join(drop)
            if keep is not None:
                update["add_labels"] = keep
        resp = await self._call(
            "PUT", self._issue_url(issue), body=update, idempotent=False, absent=()
        )
        try:
            moved = self._normalise(resp.body)
        except ValidationError as exc:
            raise tracker_error(
                RESPONSE, f"gitlab answered the update with {exc.message}"
            ) from None
        if state_key(moved.state) != target:
            raise tracker_error(
                RESPONSE, f"gitlab kept the issue in {moved.state!r} after the update"
            )
        return {"state": moved.state}


def _note(record: Mapping[str, Any]) -> dict[str, Any]:
    author = record.get("author")
    username = author.get("username") if isinstance(author, dict) else None
    body = record.get("body")
    return {
        "id": record.get("id") if isinstance(record.get("id"), int) else None,
        "author": username if isinstance(username, str) else None,
        "body": cap_text(body, MAX_NOTE_CHARS) if isinstance(body, str) else "",
        "created_at": record.get("created_at")
        if isinstance(record.get("created_at"), str)
        else None,
        "system": record.get("system") is True,
    }
