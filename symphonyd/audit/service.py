"""The audit writer's two methods, independent of the transport that carries them.

``append`` shapes every event (content rules), stamps the sender the transport observed,
and returns only once the group committer reports the batch durable. ``head`` reports the
chain head for health checks and off-host checkpoints.
"""

from __future__ import annotations

from symphonyd.audit.commit import GroupCommitter
from symphonyd.audit.shaping import DEFAULT_MAX_RECORD_BYTES, shape
from symphonyd.audit.store import Pending, Sender
from symphonyd.core.api.audit import AuditAck, AuditAppend, AuditHead
from symphonyd.core.errors import ValidationError
from symphonyd.core.redact import Redactor

MAX_RECORDS_PER_REQUEST = 1000


class AuditService:
    def __init__(
        self,
        committer: GroupCommitter,
        redactor: Redactor,
        *,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self._committer = committer
        self._redactor = redactor
        self._max_record_bytes = max_record_bytes

    async def append(self, request: AuditAppend, sender: Sender) -> AuditAck:
        """Append durably; ValidationError (nothing written) if any record is refused."""
        if not request.records:
            raise ValidationError("audit.append needs at least one record", code="invalid_params")
        if len(request.records) > MAX_RECORDS_PER_REQUEST:
            raise ValidationError(
                f"at most {MAX_RECORDS_PER_REQUEST} records per request", code="invalid_params"
            )
        # Shape all first: a request is written whole or not at all.
        items = [
            Pending(shape(event, self._redactor, max_record_bytes=self._max_record_bytes), sender)
            for event in request.records
        ]
        records = await self._committer.submit(items)
        return AuditAck(seqs=[r["seq"] for r in records], head_hash=records[-1]["record_hash"])

    def head(self) -> AuditHead:
        head = self._committer.head
        return AuditHead(seq=head.seq, hash=head.hash)
