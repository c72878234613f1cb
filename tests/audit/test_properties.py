"""Whatever a client sends, the stored record is canonical, verifiable and secret-free."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphonyd.audit.shaping import shape
from symphonyd.audit.store import Pending
from symphonyd.audit.verify import verify_dir
from symphonyd.core.api.audit import AuditEventIn
from symphonyd.core.audit_chain import canonical_bytes
from symphonyd.core.redact import Redactor
from tests.audit.helpers import CLIENT, Clock, open_store

CANARY = "Zq8-canary-secret-41x"

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _plant(value: Any, where: int) -> Any:
    """``value`` with the canary spliced into some string (or added as one)."""
    if isinstance(value, dict):
        out = dict(value)
        out[f"k{where}"] = f"..{CANARY}.."
        return out
    return {"v": value, "s": f"{CANARY}"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_json, where=st.integers(0, 3), ident=st.text(max_size=30))
def test_any_payload_is_stored_verifiably_without_the_secret(
    payload: Any, where: int, ident: str
) -> None:
    event = AuditEventIn(
        type="tool_call",
        payload=_plant(payload, where),
        issue_id=ident + CANARY,
        session_id=ident,
    )
    shaped = shape(event, Redactor([CANARY]))
    canonical_bytes(shaped.payload)  # never raises: every value is reproducible JSON
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp), Clock())
        store.append([Pending(shaped, CLIENT)])
        store.close()
        data = b"".join(p.read_bytes() for p in Path(tmp).glob("*.ndjson"))
        assert CANARY.encode() not in data
        assert CANARY not in json.dumps(json.loads(data.splitlines()[-1]))
        assert verify_dir(Path(tmp)).ok
