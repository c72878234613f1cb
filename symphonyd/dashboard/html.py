"""Small HTML helpers: every value goes through ``esc`` so tracker text renders inert."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from symphonyd.dashboard.assets import ASSET_VERSION


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def issue_href(identifier: str) -> str:
    return "/issues/" + quote(identifier, safe="")


def issue_link(identifier: str) -> str:
    return f'<a href="{esc(issue_href(identifier))}">{esc(identifier)}</a>'


def external_link(url: str | None, label: str = "tracker") -> str:
    """Only http(s) links become anchors; a ``javascript:`` URL from a tracker stays text."""
    if not url:
        return ""
    if urlsplit(url).scheme not in ("http", "https"):
        return f'<span class="muted">{esc(url)}</span>'
    return f'<a href="{esc(url)}" rel="noopener noreferrer" target="_blank">{esc(label)}</a>'


def issue_cell(identifier: str, title: str | None = None, url: str | None = None) -> str:
    """The identifier (to the issue page), its title and a link to the tracker."""
    name = f'<span class="title">{esc(title)}</span>' if title else ""
    return f"{issue_link(identifier)} {external_link(url)}{name}"


def parse_ts(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_age(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def when(ts: str | None, *, now: datetime | None = None) -> str:
    """A ``<time>`` with a relative label; the page script keeps the label current."""
    moment = parse_ts(ts)
    if moment is None:
        return '<span class="muted">&mdash;</span>'
    now = now or datetime.now(UTC)
    delta = (now - moment).total_seconds()
    label = f"{human_age(delta)} ago" if delta >= 0 else f"in {human_age(delta)}"
    return f'<time datetime="{esc(ts)}" title="{esc(ts)}" data-rel>{esc(label)}</time>'


def at(ts: str | None) -> str:
    """An absolute UTC time (``2026-11-22 06:00:05``), the ISO value kept in ``datetime``."""
    moment = parse_ts(ts)
    if moment is None:
        return '<span class="muted">&mdash;</span>'
    label = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f'<time datetime="{esc(ts)}">{label}</time>'


def duration(seconds: float | None) -> str:
    if seconds is None:
        return '<span class="muted">&mdash;</span>'
    return esc(human_age(seconds)) if seconds >= 1 else f"{seconds:.1f}s"


def num(value: int | float | None) -> str:
    if value is None:
        return '<span class="muted">&mdash;</span>'
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def table(headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title: str, body: str, *, csrf: str, nav: str) -> str:
    links = "".join(
        f'<a href="{href}"{" class=active" if key == nav else ""}>{label}</a>'
        for key, href, label in (
            ("overview", "/", "Overview"),
            ("activity", "/activity", "Activity"),
            ("audit", "/audit", "Audit"),
        )
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="csrf-token" content="{esc(csrf)}">'
        f"<title>{esc(title)} · symphonyd</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="/static/dashboard.css?v={ASSET_VERSION}">'
        f'<script src="/static/dashboard.js?v={ASSET_VERSION}" defer></script>'
        "</head><body>"
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header><span class="brand">symphonyd</span><nav>{links}</nav>'
        '<span id="live-status" class="live-status">connecting…</span></header>'
        f'<main id="main" tabindex="-1">{body}</main></body></html>'
    )
