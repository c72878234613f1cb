"""Helpers shared by the REST adapters (github, gitlab): ``Link``-header pagination and
label names."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from symphonyd.core.issue import build_issue
from symphonyd.tracker.errors import PAGINATION, RESPONSE, tracker_error
from symphonyd.tracker.http import JsonResponse

MAX_PAGES = 10_000
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')

# GET one page: (url, query or None when the url already carries it) -> response.
PageGet = Callable[[str, Any], Awaitable[JsonResponse]]


async def link_pages(get: PageGet, url: str, params: Any, *, base: str, name: str) -> list[Any]:
    """Every record of a JSON-array list, following ``Link: <...>; rel="next"`` in order.

    A next link must stay under ``base``: the token goes wherever it points. A link seen
    before, or more than MAX_PAGES pages, is a ``tracker_pagination`` error, never a partial
    result."""
    records: list[Any] = []
    next_url, query = url, params
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        resp = await get(next_url, query)
        if resp.status != 200 or not isinstance(resp.body, list):
            raise tracker_error(
                RESPONSE,
                f"{name} list answered HTTP {resp.status} without a JSON array",
                status=resp.status,
            )
        records.extend(resp.body)
        following = next_link(resp.headers.get("link", ""), base, name)
        if following is None:
            return records
        if following in seen:
            raise tracker_error(PAGINATION, f"{name} pagination returned a page twice")
        seen.add(following)
        next_url, query = following, None  # the link carries the query (and any cursor)
    raise tracker_error(PAGINATION, f"{name} pagination exceeded {MAX_PAGES} pages")


def next_link(header: str, base: str, name: str) -> str | None:
    match = _LINK_NEXT.search(header)
    if match is None:
        return None
    url = match.group(1)
    if not url.startswith(base + "/"):
        raise tracker_error(
            PAGINATION,
            f"{name} pagination link leaves the configured endpoint; refusing to follow it",
        )
    return url


def label_names(record: Mapping[str, Any]) -> tuple[str, ...]:
    """A record's label names (strings or objects with ``name``), normalised as an Issue's
    labels are (SPEC 11.3)."""
    raw = record.get("labels")
    names = [
        item.get("name") if isinstance(item, dict) else item
        for item in (raw if isinstance(raw, list) else [])
    ]
    probe = build_issue(
        id="x", identifier="x", title="x", state="x", dispatchable=False, labels=names
    )
    return probe.labels
