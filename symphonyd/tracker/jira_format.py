"""Jira Cloud wire formats: the email:token credential, JQL quoting, ADF text in and out, and
the small field readers (status, timestamps, comments) the adapter normalises with.

Kept apart from the adapter because each piece is small and is where hostile provider data
lands: ADF documents are walked iteratively with a node budget (no recursion on nesting a
provider controls), and JQL values are always quoted so a state name cannot change a query.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from symphonyd.core.errors import SymphonyError
from symphonyd.tracker.errors import MISSING_SECRET, config_error, tracker_error
from symphonyd.tracker.secret import Secret

MAX_ADF_NODES = 50_000
MAX_TEXT_CHARS = 200_000
MAX_COMMENT_TEXT = 8_000
_TZ = re.compile(r"([+-]\d\d)(\d\d)$")
_MAX_CREDENTIAL_BYTES = 8192  # as credentials.py reads them
_BLOCKS = frozenset({"paragraph", "heading", "listItem", "codeBlock", "blockquote", "rule"})


def basic_credential(secret: Secret, name: str) -> tuple[str, Secret]:
    """(account email, ``Authorization`` header value) from an ``email:api-token`` secret.

    Split at the last colon: API tokens never contain one, so an odd email still parses.
    """
    value = secret.reveal()
    email, sep, token = value.rpartition(":")
    if not sep or "@" not in email or not email.strip() or not token.strip() or "\n" in value:
        # Never echoes the value: it is the token.
        raise tracker_error(
            MISSING_SECRET,
            f"tracker secret ${name} must hold 'account-email:api-token' on one line",
            secret=name,
        )
    raw = f"{email.strip()}:{token.strip()}".encode()
    return email.strip(), Secret("Basic " + base64.b64encode(raw).decode("ascii"))


def jira_credential_usable(path: Path) -> bool:
    """Whether a credential file holds a usable ``email:token`` (doctor; never shown)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_CREDENTIAL_BYTES + 1)
    except OSError:
        return False
    if len(data) > _MAX_CREDENTIAL_BYTES:
        return False
    try:
        basic_credential(Secret(data.decode("utf-8", "replace").strip()), "tracker")
    except SymphonyError:
        return False
    return True


def jql_string(value: str) -> str:
    """A JQL string literal: double-quoted, with backslash and quote escaped."""
    cleaned = "".join(ch for ch in value if ch >= " ")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def jql_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(jql_string(v) for v in values) + ")"


def check_jql_filter(jql: str) -> str:
    """An operator's extra filter, usable inside ``AND (...)``: balanced parentheses outside
    string literals (so it cannot close ours and OR in more), and no ORDER BY of its own."""
    depth, quote, escaped = 0, "", False
    for ch in jql:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                break
    if depth != 0 or quote:
        raise config_error("tracker.provider.jql must have balanced parentheses and quotes")
    if "order by" in " ".join(jql.lower().split()):
        raise config_error("tracker.provider.jql must not contain ORDER BY (the adapter orders)")
    return jql.strip()


def adf_text(doc: Any) -> str | None:
    """Plain text of an Atlassian Document Format value; a plain string passes through.

    Block nodes end with a newline; the walk stops after ``MAX_ADF_NODES`` nodes or
    ``MAX_TEXT_CHARS`` characters, so a hostile document costs bounded work.
    """
    if isinstance(doc, str):
        return doc
    if not isinstance(doc, dict):
        return None
    parts: list[str] = []
    size = 0
    budget = MAX_ADF_NODES
    stack: list[Any] = [doc]
    while stack and budget > 0 and size < MAX_TEXT_CHARS:
        node = stack.pop()
        budget -= 1
        if isinstance(node, str):  # a block's closing newline, queued below
            parts.append(node)
            size += len(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        text = node.get("text")
        if kind == "text" and isinstance(text, str):
            parts.append(text)
            size += len(text)
        elif kind == "hardBreak":
            parts.append("\n")
        elif kind in ("mention", "emoji"):
            attrs = node.get("attrs")
            label = attrs.get("text") if isinstance(attrs, dict) else None
            if isinstance(label, str):
                parts.append(label)
        content = node.get("content")
        if kind in _BLOCKS:
            stack.append("\n")
        if isinstance(content, list):
            stack.extend(reversed(content[:budget]))
    return "".join(parts).strip("\n")[:MAX_TEXT_CHARS]


def adf_document(text: str) -> dict[str, Any]:
    """A Markdown/plain comment as an ADF document: one paragraph per non-blank line group,
    line breaks kept as ``hardBreak`` (ADF refuses empty text nodes)."""
    paragraphs: list[dict[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = block.split("\n")
        content: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            if i:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        while content and content[-1]["type"] == "hardBreak":
            content.pop()
        while content and content[0]["type"] == "hardBreak":
            content.pop(0)
        if content:
            paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def status_of(raw: Any) -> tuple[Any, str | None]:
    """(status name, status category key) of a status object."""
    if not isinstance(raw, dict):
        return None, None
    category = raw.get("statusCategory")
    key = category.get("key") if isinstance(category, dict) else None
    return raw.get("name"), key if isinstance(key, str) else None


def jira_timestamp(raw: Any) -> Any:
    """Jira writes offsets as ``-0700``; RFC 3339 wants ``-07:00``."""
    return _TZ.sub(r"\1:\2", raw) if isinstance(raw, str) else raw


def comment_view(raw: Mapping[str, Any]) -> dict[str, Any]:
    author = raw.get("author")
    name = author.get("displayName") if isinstance(author, dict) else None
    text = adf_text(raw.get("body")) or ""
    return {
        "id": raw.get("id") if isinstance(raw.get("id"), str) else None,
        "author": name[:200] if isinstance(name, str) else None,
        "created": raw.get("created") if isinstance(raw.get("created"), str) else None,
        "body": text[:MAX_COMMENT_TEXT],
    }
