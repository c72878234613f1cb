"""The link daemon does not hammer a worker that refuses it: sessions that end at once are
reopened later and later (symphonyd/link/redial.py).

Real ``python -m symphonyd.link``, real ``ssh``; the worker is a test-owned ``sshd`` whose
key was enrolled without ``port-forwarding`` (the tracker forward is refused, the audit
session works), or no sshd at all (both are refused). With the old fixed interval (0.2 s
here) a few seconds held dozens of handshakes.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.launcher.test_daemon_sockets import stop
from tests.link.conftest import Worker, _keygen, free_port
from tests.link.test_link_daemon import host_config, spawn_link, wait_socket

pytestmark = pytest.mark.root

WATCH_S = 7.0
INTERVAL = "0.2"
# Fixed 0.2 s: about 30 attempts in 7 s. Doubling from 0.2 s (each delay drawn from the
# upper half of its step): at most 6 delays fit, so 7 attempts.
MOST_ATTEMPTS = 8


def _watch(config: Path, hosts: Path, key: Path) -> str:
    proc = spawn_link(config, hosts, key, extra=("--replicate-interval", INTERVAL))
    wait_socket(hosts / "w1.sock", proc)
    time.sleep(WATCH_S)
    code, err = stop(proc)
    assert code == 0, err[-3000:]
    return err


def _lines(err: str, event: str, outcome: str) -> list[str]:
    return [
        line
        for line in err.splitlines()
        if f"event={event} " in line and f"outcome={outcome}" in line and "host=w1" in line
    ]


def _delays(lines: list[str]) -> list[float]:
    return [float(m.group(1)) for line in lines if (m := re.search(r"retry_in=([\d.]+)", line))]


def test_a_refused_tracker_forward_is_retried_later_each_time(
    worker: Worker, tmp_path: Path
) -> None:
    # Enrolled as before the tracker path existed: every session works but the forward.
    key_line = (tmp_path / "authorized_keys").read_text()
    (tmp_path / "authorized_keys").write_text(
        key_line.replace("restrict,port-forwarding,", "restrict,")
    )
    err = _watch(host_config(tmp_path, worker), tmp_path / "hosts", worker.key)
    ended = _lines(err, "link_tracker", "forward_ended")
    assert ended and "remote port forwarding failed" in ended[0], err[-3000:]
    assert 2 <= len(ended) <= MOST_ATTEMPTS, ended
    delays = _delays(ended)
    assert len(delays) == len(ended)
    # The k-th delay is drawn from [0.1, 0.2] * 2**(k-1) s (0.2 s interval, upper half of
    # each doubling step); a fixed interval stays at 0.2.
    assert delays == sorted(delays) and delays[-1] >= 0.1 * 2 ** (len(delays) - 1), delays


def test_an_unreachable_worker_costs_few_handshakes(tmp_path: Path) -> None:
    key = tmp_path / "control_key"
    _keygen(key)
    known = tmp_path / "known_hosts"
    known.write_text("")
    dead = Worker(free_port(), key, known, tmp_path / "run", tmp_path)  # nothing listens
    err = _watch(host_config(tmp_path, dead), tmp_path / "hosts", key)
    forwards = _lines(err, "link_tracker", "forward_ended")
    audits = _lines(err, "audit_replica", "session_ended")
    assert forwards and audits, err[-3000:]
    assert "Connection refused" in forwards[0] and "Connection refused" in audits[0]
    assert len(forwards) <= MOST_ATTEMPTS and len(audits) <= MOST_ATTEMPTS, (forwards, audits)
