"""The ``local`` tracker: Markdown issue files in a directory, no account needed.

Every fetch re-reads the directory, so edits show up on the next poll; the tracker daemon
also watches the directory and tells the dispatcher at once (``change_events.py``). A
blocker is resolved only when its file exists and its state is terminal; anything else keeps
``dispatchable`` false. Profile: docs/trackers/local.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from symphonyd.core.api.tracker import ToolResult
from symphonyd.core.errors import SymphonyError
from symphonyd.core.issue import BlockerRef, Issue, build_issue, state_key
from symphonyd.tracker.adapter import TrackerAdapter, blocked
from symphonyd.tracker.errors import RESPONSE, config_error, tracker_error
from symphonyd.tracker.local_store import IDENTIFIER, LocalRecord, LocalStore
from symphonyd.tracker.provider_config import (
    TrackerSettings,
    check_keys,
    opt_bool,
    opt_str,
    opt_str_list,
)

log = logging.getLogger(__name__)

DEFAULT_DIRECTORY = "/var/lib/symphony/issues"
KEYS = ("directory", "tool_states", "author", "watch")


class LocalAdapter(TrackerAdapter):
    kind = "local"

    def __init__(self, settings: TrackerSettings, base_dir: Path | None = None) -> None:
        p = settings.provider
        check_keys(p, KEYS, self.kind)
        super().__init__(settings, opt_str_list(p, "tool_states"))
        directory = Path(opt_str(p, "directory", DEFAULT_DIRECTORY) or DEFAULT_DIRECTORY)
        if not directory.is_absolute():
            if base_dir is None:
                raise config_error("tracker.provider.directory must be an absolute path")
            directory = base_dir / directory
        self.store = LocalStore(directory)
        # identifier -> (record, its Issue) for records without blockers: such an Issue
        # depends on the parsed record alone, and building 10 000 of them cost more than
        # reading the files on every poll. The record object is the store's cached parse,
        # so a changed file (a new record) misses.
        self._issues: dict[str, tuple[LocalRecord, Issue]] = {}
        self.author = opt_str(p, "author", "symphony-agent") or "symphony-agent"
        # false: no inotify watch (e.g. a network filesystem whose remote writes raise no
        # events); changes are then seen on the poll only.
        self.watch = opt_bool(p, "watch", True)

    def watch_directory(self) -> Path | None:
        return self.store.directory if self.watch else None

    async def _fetch_by_states(self, states: list[str]) -> list[Issue]:
        return await asyncio.to_thread(self._scan_states, {state_key(s) for s in states})

    async def _fetch_by_ids(self, ids: list[str]) -> list[Issue]:
        return await asyncio.to_thread(self._scan_ids, set(ids))

    def _load_all(self) -> tuple[dict[str, LocalRecord], dict[str, SymphonyError]]:
        good: dict[str, LocalRecord] = {}
        bad: dict[str, SymphonyError] = {}
        identifiers = self.store.identifiers()
        self.store.retain(identifiers)
        if len(self._issues) > len(identifiers):
            keep = set(identifiers)
            self._issues = {k: v for k, v in self._issues.items() if k in keep}
        for identifier in identifiers:
            try:
                record = self.store.read(identifier)
            except SymphonyError as exc:
                bad[identifier] = exc
                continue
            if record is not None:
                good[identifier] = record
        return good, bad

    def scan(self) -> tuple[list[Issue], dict[str, str]]:
        """Every issue that normalises, plus identifier -> reason for the files that do not."""
        records, bad = self._load_all()
        problems = {identifier: exc.message for identifier, exc in bad.items()}
        issues = []
        for record in records.values():
            try:
                issues.append(self._normalise(record, records))
            except SymphonyError as exc:
                problems[record.identifier] = exc.message
        return issues, problems

    def _scan_states(self, keys: set[str]) -> list[Issue]:
        issues, problems = self.scan()
        for identifier, reason in sorted(problems.items()):
            log.warning("local: omitting malformed issue file %s.md (%s)", identifier, reason)
        return [i for i in issues if state_key(i.state) in keys]

    def _scan_ids(self, ids: set[str]) -> list[Issue]:
        direct = self._direct_ids(ids)
        if direct is not None:
            return direct
        records, bad = self._load_all()
        for identifier, exc in bad.items():
            if identifier in ids:
                raise tracker_error(RESPONSE, f"requested issue file is malformed: {exc.message}")
        return self._normalise_requested(records.values(), records, ids)

    def _direct_ids(self, ids: set[str]) -> list[Issue] | None:
        """Issues whose id is also their file name, read without listing the directory.

        The dispatcher and launcher refresh a few issues at a time; re-reading the whole
        directory for each refresh made a board of n issues cost O(n) per issue. Every id
        this tracker creates is its identifier, so ``<id>.md`` is looked at first; None (a
        full scan) when any id is not found that way, so an issue whose front matter gives
        it a different id is still found, as before.
        """
        index: dict[str, LocalRecord] = {}
        for issue_id in ids:
            if not IDENTIFIER.match(issue_id):
                return None
            record = self.store.read(issue_id)  # a malformed file raises, as in a scan
            if record is None or record.meta.get("id", record.identifier) != issue_id:
                return None
            index[issue_id] = record
        wanted = list(index.values())
        for record in wanted:
            refs = record.meta.get("blocked_by")
            for ref in refs if isinstance(refs, list) else []:
                if isinstance(ref, str) and IDENTIFIER.match(ref) and ref not in index:
                    try:
                        blocker = self.store.read(ref)
                    except SymphonyError:
                        continue  # unknown state: stays blocking, as in a full scan
                    if blocker is not None:
                        index[ref] = blocker
        return self._normalise_requested(wanted, index, ids)

    def _normalise_requested(
        self, candidates: Iterable[LocalRecord], index: Mapping[str, LocalRecord], ids: set[str]
    ) -> list[Issue]:
        out = []
        for record in candidates:
            raw_id = record.meta.get("id", record.identifier)
            if raw_id in ids or record.identifier in ids:
                try:
                    issue = self._normalise(record, index)
                except SymphonyError as exc:
                    raise tracker_error(
                        RESPONSE,
                        f"requested issue file {record.identifier} " f"is malformed: {exc.message}",
                    ) from None
                if issue.id in ids:
                    out.append(issue)
        return out

    def _normalise(self, record: LocalRecord, index: Mapping[str, LocalRecord]) -> Issue:
        raw_blockers = record.meta.get("blocked_by")
        if raw_blockers:
            return self._build(record, index)
        cached = self._issues.get(record.identifier)
        if cached is not None and cached[0] is record:
            return cached[1]
        issue = self._build(record, index)
        self._issues[record.identifier] = (record, issue)
        return issue

    def _build(self, record: LocalRecord, index: Mapping[str, LocalRecord]) -> Issue:
        meta = record.meta
        blockers = []
        raw_blockers = meta.get("blocked_by")
        for ref in raw_blockers if isinstance(raw_blockers, list) else []:
            if not isinstance(ref, str) or not IDENTIFIER.match(ref):
                continue
            other = index.get(ref)
            state = other.meta.get("state") if other is not None else None
            blockers.append(
                BlockerRef(
                    id=str(other.meta.get("id", ref)) if other is not None else None,
                    identifier=ref,
                    state=state.strip() if isinstance(state, str) and state.strip() else None,
                )
            )
        return build_issue(
            id=meta.get("id", record.identifier),
            identifier=record.identifier,
            title=meta.get("title"),
            state=meta.get("state"),
            dispatchable=not blocked(blockers, self.settings.terminal_states),
            description=record.description or None,
            priority=meta.get("priority"),
            labels=meta.get("labels") or (),
            blocked_by=blockers,
            created_at=meta.get("created_at"),
            updated_at=meta.get("updated_at"),
            native_ref={"file": f"{record.identifier}.md"},
        )

    # ------------------------------------------------------------------ tools

    async def _read(self, issue: Issue) -> ToolResult:
        result = await super()._read(issue)
        if not result.success:
            return result
        comments = await asyncio.to_thread(self.store.comments, issue.identifier)
        return ToolResult(True, {**result.output, "comments": comments})

    async def _comment(self, issue: Issue, body: str) -> dict[str, Any]:
        stamp = await asyncio.to_thread(self.store.add_comment, issue.identifier, body, self.author)
        return {"created_at": stamp}

    async def _move(self, issue: Issue, state: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.update, issue.identifier, state=state)
        return {"state": record.meta["state"]}
