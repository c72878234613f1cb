"""A canary Secret must not leak through any ordinary way of printing or serialising it."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import traceback
from dataclasses import dataclass

import pytest

from symphonyd.core.codec import encode
from symphonyd.core.errors import SymphonyError
from symphonyd.runtime.logging import log_event
from symphonyd.tracker.secret import Secret

CANARY = "canary-7f3a9c-sk-live-DO-NOT-LEAK"


@dataclass(frozen=True)
class Holder:
    name: str
    token: Secret


def test_reveal_is_the_only_way_out() -> None:
    s = Secret(CANARY)
    assert s.reveal() == CANARY
    renderings = [
        str(s),
        repr(s),
        f"{s}",
        f"{s!r}",
        f"{s!s}",
        f"{s:>40}",
        "%s %r" % (s, s),  # noqa: UP031 - the point is to test %-formatting
        "{} {!r}".format(s, s),  # noqa: UP032
        repr([s]),
        repr({"k": s}),
        repr((s,)),
        repr({s.reveal()[:0]: [s]}),
        repr(Holder("x", s)),
        str(Holder("x", s)),
    ]
    for text in renderings:
        assert CANARY not in text
        assert "***" in text


def test_not_serialisable() -> None:
    s = Secret(CANARY)
    with pytest.raises(TypeError) as err:
        json.dumps({"t": s})
    assert CANARY not in str(err.value)
    with pytest.raises(TypeError) as err:
        json.dumps(encode(Holder("x", s)))
    assert CANARY not in str(err.value)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        copy.deepcopy(s)


def test_not_in_exceptions_or_tracebacks() -> None:
    s = Secret(CANARY)
    try:
        raise SymphonyError(f"auth failed with {s}", code="tracker_auth", token=s)
    except SymphonyError as exc:
        assert CANARY not in str(exc)
        assert CANARY not in repr(exc)
        assert CANARY not in repr(exc.as_dict())
        assert CANARY not in "".join(traceback.format_exception(exc))


def test_not_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret(CANARY)
    log = logging.getLogger("test.secret")
    caplog.set_level(logging.DEBUG)
    log.info("token %s %r", s, s)
    log.info("holder %s", Holder("h", s))
    log_event(log, "tracker_auth", outcome="failed", token=s, holder=Holder("h", s))
    try:
        raise ValueError(s)
    except ValueError:
        log.exception("failed")
    assert caplog.records
    assert CANARY not in caplog.text
    assert all(CANARY not in r.getMessage() for r in caplog.records)


def test_immutable_compare_and_unhashable() -> None:
    s = Secret(CANARY)
    with pytest.raises(AttributeError):
        s.x = 1
    assert s == Secret(CANARY)
    assert s != Secret("other")
    assert s != CANARY  # never equal to the bare string
    assert bool(s) and not Secret("")
    with pytest.raises(TypeError):
        hash(s)
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]
