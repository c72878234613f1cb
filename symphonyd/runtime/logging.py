"""Structured logging: stable ``key=value`` lines (SPEC 13.1), journald fields when available.

``log_event(log, "dispatch", outcome="started", issue_id=...)`` logs
``event=dispatch outcome=started issue_id=...``. Values are quoted when they hold spaces,
quotes or ``=``, and control characters (newlines included) are escaped, so a hostile issue
title cannot forge a second log line.

``log_context(issue_id=..., issue_identifier=...)`` binds fields to everything logged in the
current task (and the tasks it starts), free-text lines included: a run's hook, workspace
and sandbox lines carry the issue's fields without each call site passing them, so
``symphonyctl logs ISSUE`` finds them (docs/design/0253-log-context-issue-fields.md).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-,]+")
_KEY = re.compile(r"[a-z][a-z0-9_]*")
FIELDS_ATTR = "symphony_fields"
# Fields bound by log_context(); copied into every task started under it (asyncio does so).
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "symphony_log_context",
    default={},  # noqa: B039 - never mutated, only replaced
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged in this context; ``None`` values are left out."""
    present = {k: v for k, v in fields.items() if v is not None}
    token = _CONTEXT.set({**_CONTEXT.get(), **present})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's bound context fields that its own fields do not already name."""
    own = getattr(record, FIELDS_ATTR, {})
    # Read when the record is handled: handlers here run in the logging call's own context.
    bound = _CONTEXT.get()
    return {k: v for k, v in bound.items() if k not in own}


def _escape(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return f'"{_escape(text)}"'


def format_kv(fields: dict[str, Any]) -> str:
    """``k=v`` pairs in the given order; keys that are not ``[a-z][a-z0-9_]*`` are escaped."""
    parts = []
    for key, value in fields.items():
        safe_key = key if _KEY.fullmatch(key) else "bad_key_" + format_value(key)
        parts.append(f"{safe_key}={format_value(value)}")
    return " ".join(parts)


def log_event(
    logger: logging.Logger,
    event: str,
    *,
    level: int = logging.INFO,
    exc_info: BaseException | None = None,
    **fields: Any,
) -> None:
    """Log one event as ``event=<event> k=v ...``; the fields also become journal fields.

    ``None`` values are left out. ``exc_info`` attaches a traceback (kept on one line on
    stderr, a separate EXCEPTION_TEXT field in the journal).
    """
    if not logger.isEnabledFor(level):
        return
    present = {k: v for k, v in fields.items() if v is not None}
    message = format_kv({"event": event, **present})
    # "%s" keeps user text out of the format string so a stray "%" cannot break logging.
    logger.log(
        level,
        "%s",
        message,
        exc_info=exc_info,
        extra={FIELDS_ATTR: {"event": event, **present}},
        stacklevel=2,
    )


# --------------------------------------------------------------------------- sinks

JOURNAL_SOCKET = "/run/systemd/journal/socket"  # fixed in libsystemd
_JOURNAL_FIELD = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")
_RESERVED_FIELDS = frozenset(
    {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "LOGGER", "CODE_FILE", "CODE_LINE", "CODE_FUNC"}
)


def journal_field_name(key: str) -> str | None:
    """``issue_id`` -> ``ISSUE_ID``; None for names journald would reject or we reserve."""
    name = key.upper()
    if not _JOURNAL_FIELD.fullmatch(name) or name in _RESERVED_FIELDS:
        return None
    return name


def _journal_priority(levelno: int) -> int:
    # syslog priorities: 3 err, 4 warning, 6 info, 7 debug (2 crit)
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class KvFormatter(logging.Formatter):
    """One line per record: ``<UTC time> level=<l> daemon=<d> logger=<n> <fields>``."""

    converter = time.gmtime

    def __init__(self, daemon: str, *, timestamps: bool = True) -> None:
        super().__init__()
        self.daemon = daemon
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        head = {"level": record.levelname.lower(), "daemon": self.daemon, "logger": record.name}
        line = format_kv(head) + " " + message_of(record)
        if record.exc_info:
            # Tracebacks stay on the same line (escaped) so they cannot forge other lines.
            line += " exc=" + format_value(self.formatException(record.exc_info))
        if self.timestamps:
            stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            line = f"{stamp}.{int(record.msecs):03d}Z {line}"
        return line


def message_of(record: logging.LogRecord) -> str:
    """The record's ``k=v`` body; free-text messages become ``msg="..."`` (escaped)."""
    try:
        text = record.getMessage()
    except Exception:  # a broken %-format in some library must not lose the record
        text = f"{record.msg!r} {record.args!r}"
    extra = context_fields(record)
    tail = " " + format_kv(extra) if extra else ""
    if hasattr(record, FIELDS_ATTR):
        return text + tail
    return "msg=" + format_value(text) + tail


class JournalHandler(logging.Handler):
    """Native journal protocol via python3-systemd, with ``log_event`` fields as journal
    fields (``issue_id`` -> ``ISSUE_ID``). If the journal cannot be written, the record and a
    one-time warning go to the fallback handler (SPEC 13.2) and the daemon carries on."""

    def __init__(self, daemon: str, fallback: logging.Handler) -> None:
        super().__init__()
        from systemd import journal  # imported here: only present where journald is used

        self._send = journal.send
        self.daemon = daemon
        self.fallback = fallback
        self._broken = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {
                "PRIORITY": str(_journal_priority(record.levelno)),
                "SYSLOG_IDENTIFIER": f"symphony-{self.daemon}",
                "SYMPHONY_DAEMON": self.daemon,
                "LOGGER": record.name,
                "CODE_FILE": record.pathname,
                "CODE_LINE": record.lineno,
                "CODE_FUNC": record.funcName,
            }
            own = getattr(record, FIELDS_ATTR, {})
            for key, value in {**context_fields(record), **own}.items():
                name = journal_field_name(key)
                if name is not None and value is not None:
                    fields["SYMPHONY_EVENT" if name == "EVENT" else name] = str(value)
            message = message_of(record)
            if record.exc_info:
                fields["EXCEPTION_TEXT"] = logging.Formatter().formatException(record.exc_info)
            self._deliver(message, fields)
        except Exception as exc:
            self._fall_back(record, exc)

    def _deliver(self, message: str, fields: dict[str, Any]) -> None:
        if not os.path.exists(JOURNAL_SOCKET):
            # libsystemd drops messages silently when the socket is missing (ENOENT).
            raise FileNotFoundError(JOURNAL_SOCKET)
        self._send(message, **fields)

    def _fall_back(self, record: logging.LogRecord, exc: Exception) -> None:
        if not self._broken:
            self._broken = True
            warning = logging.LogRecord(
                "symphonyd.logging", logging.WARNING, __file__, 0, "%s", (), None
            )
            warning.msg = format_kv(
                {"event": "log_sink_failed", "sink": "journal", "error": type(exc).__name__}
            )
            setattr(warning, FIELDS_ATTR, {})
            self.fallback.handle(warning)
        self.fallback.handle(record)


class _QuietStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr that never raises or prints logging's own tracebacks when the pipe is gone."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def journal_stream_matches(fd: int, environ: dict[str, str] | None = None) -> bool:
    """True when ``fd`` is the stream systemd connected to the journal (JOURNAL_STREAM)."""
    value = (environ if environ is not None else dict(os.environ)).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError):
        return False


def setup_logging(
    daemon: str,
    *,
    level: int = logging.INFO,
    stream: Any = None,
    environ: dict[str, str] | None = None,
) -> logging.Handler:
    """Configure the root logger once per process; returns the handler in use.

    Under systemd (stderr is the JOURNAL_STREAM) records go to the journal natively with
    structured fields; otherwise to stderr as ``key=value`` lines. The journal's own
    timestamps make ours redundant there.
    """
    out = stream if stream is not None else sys.stderr
    logging.raiseExceptions = False  # a failing sink must not print tracebacks or raise
    fallback = _QuietStreamHandler(out)
    handler: logging.Handler
    if journal_stream_matches(out.fileno(), environ):
        fallback.setFormatter(KvFormatter(daemon, timestamps=False))
        try:
            handler = JournalHandler(daemon, fallback)
        except ImportError:
            handler = fallback
    else:
        fallback.setFormatter(KvFormatter(daemon))
        handler = fallback
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
