"""The audit writer's API: durable appends, and the read side the dashboard queries.

Served by symphony-audit on one socket per client daemon. The writer stamps the sender's
identity from SO_PEERCRED and the socket it arrived on; nothing in these messages can claim
to be someone else (AuditEventIn has no sender field and unknown fields are refused).
Build events with symphonyd.core.audit_events. Errors: ``invalid_params`` (unknown or
writer-only type, empty or over 1000 records; nothing of the request is written),
``audit_unavailable`` (the store failed; the writer is restarting). A client that gets an
error or cannot connect must treat the event as not recorded (the dispatcher pauses with
``audit_unavailable``). Format and guarantees: docs/audit.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symphonyd.core.api.shared import Empty
from symphonyd.core.wire import method


@dataclass(frozen=True)
class AuditEventIn:
    type: str  # one of audit_events.CLIENT_TYPES: dispatch, run_finished, prompt_sent, ...
    payload: dict[str, Any] = field(default_factory=dict)
    issue_id: str | None = None
    issue_identifier: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class AuditAppend:
    records: list[AuditEventIn]  # contiguous in the chain; refused whole if one is invalid


@dataclass(frozen=True)
class AuditAck:
    """Sent only after every record of the request is on disk (fdatasync)."""

    seqs: list[int]
    head_hash: str  # record_hash of the request's last record


@dataclass(frozen=True)
class AuditHead:
    seq: int
    hash: str


AUDIT_APPEND = method("audit.append", AuditAppend, AuditAck, "Append records durably.")
AUDIT_HEAD = method("audit.head", Empty, AuditHead, "Sequence number and hash of the chain head.")


# Read side, served on the dashboard's socket only (symphonyd/audit/reader.py): bounded
# queries for display and an on-demand chain verification. Nothing here can write.
AUDIT_QUERY_MAX_LIMIT = 500


@dataclass(frozen=True)
class AuditQuery:
    """Newest matching records first; every filter is optional and they combine with AND."""

    issue_id: str | None = None
    issue_identifier: str | None = None
    type: str | None = None
    since: str | None = None  # RFC 3339 UTC timestamp; records at or after it
    limit: int = 100  # 1..AUDIT_QUERY_MAX_LIMIT


@dataclass(frozen=True)
class AuditRecordView:
    seq: int
    ts: str
    type: str
    sender: dict[str, Any]
    issue_id: str | None
    issue_identifier: str | None
    session_id: str | None
    payload: dict[str, Any]
    record_hash: str


@dataclass(frozen=True)
class AuditRecords:
    records: list[AuditRecordView]
    truncated: bool  # more records matched than ``limit``


@dataclass(frozen=True)
class AuditVerifyResult:
    ok: bool
    records: int
    files: int
    head_seq: int | None
    broken_at: str | None  # "<day file>:<line>" of the first record that does not fit
    reason: str | None


@dataclass(frozen=True)
class AuditCounts:
    """Totals over the whole log, for /metrics: records by type, failed runs by error code."""

    by_type: dict[str, int]
    failures_by_reason: dict[str, int]
    unreadable_lines: int
    # Finished runs by outcome (succeeded, failed, ...), each run counted once.
    runs_by_outcome: dict[str, int] = field(default_factory=dict)
    # egress_deny decisions carried as counts in egress_summary records (the launcher writes
    # an agent's repeated decisions that way, docs/audit.md)
    egress_denies_counted: int = 0


AUDIT_QUERY = method("audit.query", AuditQuery, AuditRecords, "Read records back, newest first.")
AUDIT_VERIFY = method("audit.verify", Empty, AuditVerifyResult, "Verify the whole hash chain.")
AUDIT_COUNTS = method("audit.counts", Empty, AuditCounts, "Record counts for metrics.")


# Replication (docs/design/1100), served alone and read-only on the link's socket of a
# worker's writer (audit-link.sock): the stored lines after a seq, exactly as on disk, so the
# control host rechecks every hash. Only durable records; at most ``limit`` lines and about
# AUDIT_PAGE_MAX_BYTES of them (always one line when there is one). A line's bytes are
# ``line.encode("utf-8", "surrogateescape")``: a damaged line travels unchanged too.
AUDIT_PAGE_MAX_RECORDS = 1000
AUDIT_PAGE_MAX_BYTES = 256 << 10
# What a replicating client accepts: one line of the largest record, JSON-escaped, fits.
AUDIT_PAGE_MAX_FRAME = 4 << 20


@dataclass(frozen=True)
class AuditPageAfter:
    after: int  # the last seq the caller holds; -1 for the chain from its genesis
    limit: int = AUDIT_PAGE_MAX_RECORDS  # 1..AUDIT_PAGE_MAX_RECORDS


@dataclass(frozen=True)
class AuditPage:
    lines: list[str]  # stored lines in chain order, without their newline
    head_seq: int  # the writer's durable head when the page was read


AUDIT_RECORDS_AFTER = method(
    "audit.records_after", AuditPageAfter, AuditPage, "Stored records after a seq (replication)."
)
