"""Content rules and group commit, through the service the daemon serves."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from symphonyd.audit.commit import GroupCommitter
from symphonyd.audit.service import AuditService
from symphonyd.audit.store import AuditStore
from symphonyd.audit.verify import verify_dir
from symphonyd.core import audit_events
from symphonyd.core.api.audit import AuditAppend, AuditEventIn
from symphonyd.core.errors import ValidationError
from symphonyd.core.redact import Redactor
from tests.audit.helpers import CLIENT, WRITER, records_in

CANARY = "canary-7f3a9c1e-do-not-store"


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


async def _with_service(
    directory: Path, body: Any, *, max_batch: int = 4096, max_record_bytes: int = 64 * 1024
) -> Any:
    committer = GroupCommitter(AuditStore(directory, writer=WRITER), max_batch_records=max_batch)
    await committer.start()
    service = AuditService(committer, Redactor([CANARY]), max_record_bytes=max_record_bytes)
    try:
        return await body(service, committer)
    finally:
        await committer.close()


def test_canary_secret_never_reaches_disk(tmp_path: Path) -> None:
    encoded = base64.b64encode(f"user:{CANARY}".encode()).decode()
    events = [
        audit_events.prompt_sent("id-1", "ABC-1", f"Use {CANARY} to log in", redactor=Redactor()),
        AuditEventIn(
            type="prompt_sent",
            payload={"prompt": f"raw prompt with {CANARY}" * 40},
            issue_id=CANARY,
            session_id=f"s-{CANARY}",
        ),
        AuditEventIn(
            type="tool_call",
            payload={
                "arguments": {"cmd": ["curl", "-H", f"Authorization: Basic {encoded}"]},
                CANARY: [1.5, {"deep": f"..{CANARY}.."}],
                "note": "x" * 20_000 + CANARY,
            },
        ),
    ]

    async def body(service: AuditService, _c: GroupCommitter) -> None:
        await service.append(AuditAppend(records=events), CLIENT)

    asyncio.run(_with_service(tmp_path, body))
    stored = _all_bytes(tmp_path)
    assert CANARY.encode() not in stored
    assert encoded.encode() not in stored
    assert verify_dir(tmp_path).ok


def test_raw_prompt_becomes_hash_and_preview(tmp_path: Path) -> None:
    prompt = "Please fix the bug. " * 100

    async def body(service: AuditService, _c: GroupCommitter) -> None:
        await service.append(
            AuditAppend(records=[AuditEventIn(type="prompt_sent", payload={"prompt": prompt})]),
            CLIENT,
        )

    asyncio.run(_with_service(tmp_path, body))
    payload = records_in(tmp_path)[-1]["payload"]
    assert "prompt" not in payload
    assert payload["prompt_sha256"] == audit_events.prompt_digest(prompt)["prompt_sha256"]
    assert len(payload["preview"]) == audit_events.PREVIEW_CHARS
    assert prompt.encode() not in _all_bytes(tmp_path)


def test_size_cap_and_markers(tmp_path: Path) -> None:
    huge = {f"k{i}": "v" * 5000 for i in range(100)}

    async def body(service: AuditService, _c: GroupCommitter) -> None:
        await service.append(
            AuditAppend(
                records=[
                    AuditEventIn(type="file_change", payload=huge),
                    AuditEventIn(type="file_change", payload={"diff": "d" * 50_000}),
                ]
            ),
            CLIENT,
        )

    asyncio.run(_with_service(tmp_path, body, max_record_bytes=16 * 1024))
    capped, cut = records_in(tmp_path)[-2:]
    marker = capped["payload"]["_truncated"]
    assert marker["original_bytes"] > 500_000 and len(marker["payload_sha256"]) == 64
    assert marker["keys"][:2] == ["k0", "k1"]
    assert cut["payload"]["diff"].endswith("…[truncated 41808 chars]")
    for path in tmp_path.glob("*.ndjson"):
        assert all(len(line) <= 16 * 1024 for line in path.read_bytes().splitlines())


def test_long_strings_cut_with_marker(tmp_path: Path) -> None:
    async def body(service: AuditService, _c: GroupCommitter) -> None:
        await service.append(
            AuditAppend(records=[AuditEventIn(type="file_change", payload={"d": "d" * 9000})]),
            CLIENT,
        )

    asyncio.run(_with_service(tmp_path, body))
    value = records_in(tmp_path)[-1]["payload"]["d"]
    assert value.endswith("…[truncated 808 chars]") and value.startswith("d" * 8192)


def test_hostile_values_are_stored_reproducibly(tmp_path: Path) -> None:
    payload = {"nan": float("nan"), "inf": float("inf"), "f": 0.1, "s": "a\ud800b\n\x1b[31m"}

    async def body(service: AuditService, _c: GroupCommitter) -> None:
        await service.append(
            AuditAppend(records=[AuditEventIn(type="tool_call", payload=payload)]), CLIENT
        )

    asyncio.run(_with_service(tmp_path, body))
    stored = records_in(tmp_path)[-1]["payload"]
    assert stored["nan"] == "nan" and stored["inf"] == "inf" and stored["f"] == "0.1"
    assert "\ud800" not in stored["s"] and stored["s"].endswith("b\n\x1b[31m")
    assert verify_dir(tmp_path).ok


@pytest.mark.parametrize("kind", ["genesis", "recovered", "made_up", ""])
def test_writer_only_and_unknown_types_are_refused(tmp_path: Path, kind: str) -> None:
    async def body(service: AuditService, committer: GroupCommitter) -> None:
        before = committer.head
        with pytest.raises(ValidationError, match="event type"):
            await service.append(
                AuditAppend(records=[AuditEventIn(type="dispatch"), AuditEventIn(type=kind)]),
                CLIENT,
            )
        assert committer.head == before  # the valid record of the request was not written

    asyncio.run(_with_service(tmp_path, body))


def test_concurrent_requests_share_fsyncs_and_ack_after_durable(tmp_path: Path) -> None:
    acked_on_disk: list[bool] = []

    async def body(service: AuditService, committer: GroupCommitter) -> None:
        async def one(n: int) -> None:
            events = [AuditEventIn(type="dispatch", payload={"n": n, "part": i}) for i in range(3)]
            ack = await service.append(AuditAppend(records=events), CLIENT)
            # At acknowledgement time the records must already be in the file.
            on_disk = {r["seq"] for r in records_in(tmp_path)}
            acked_on_disk.append(set(ack.seqs) <= on_disk)
            assert ack.seqs == list(range(ack.seqs[0], ack.seqs[0] + 3))

        await asyncio.gather(*(one(n) for n in range(40)))
        assert committer.records == 120
        assert committer.batches < 40  # requests were grouped into shared fsyncs

    asyncio.run(_with_service(tmp_path, body))
    assert acked_on_disk == [True] * 40
    assert verify_dir(tmp_path).summary() == "ok 121 records"


def test_one_fsync_per_record_mode(tmp_path: Path) -> None:
    async def body(service: AuditService, committer: GroupCommitter) -> None:
        await asyncio.gather(
            *(
                service.append(AuditAppend(records=[AuditEventIn(type="pause")]), CLIENT)
                for _ in range(10)
            )
        )
        assert committer.batches == 10

    asyncio.run(_with_service(tmp_path, body, max_batch=1))
