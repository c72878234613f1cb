"""Child process for the logging tests.

``python -m tests.runtime.log_child stderr`` logs a hostile record to stderr.
``python -m tests.runtime.log_child journal`` must run in a private mount namespace with a
fresh tmpfs on /run: it plays journald on /run/systemd/journal/socket, logs, then breaks the
journal and logs again; prints what the journal received as JSON on stdout.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys

from symphonyd.runtime.logging import JOURNAL_SOCKET, log_context, log_event, setup_logging

HOSTILE_TITLE = 'Fix it\nlevel=error event=forged outcome=pwned "quoted" \x1b[31m'


def parse_native(data: bytes) -> dict[str, str]:
    """The journal native protocol: KEY=value lines, or KEY\\n<le64 size><bytes>\\n."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            size = int.from_bytes(data[nl + 1 : nl + 9], "little")
            value = data[nl + 9 : nl + 9 + size]
            i = nl + 9 + size + 1
        fields[key.decode()] = value.decode()
    return fields


def log_samples(log: logging.Logger) -> None:
    log_event(
        log,
        "dispatch",
        outcome="started",
        issue_id="abc-1",
        issue_identifier="MT-7",
        session_id="s-1",
        title=HOSTILE_TITLE,
    )
    log.warning("free text with a newline\nlevel=error forged=yes")
    try:
        raise RuntimeError("boom\nline two")
    except RuntimeError:
        log.exception("handler failed")


def main_stderr() -> None:
    setup_logging("tracker")
    log_samples(logging.getLogger("symphonyd.tracker"))


def main_journal() -> None:
    os.makedirs(os.path.dirname(JOURNAL_SOCKET), exist_ok=True)
    journald = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journald.bind(JOURNAL_SOCKET)
    journald.settimeout(10)
    st = os.fstat(sys.stderr.fileno())
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    handler = setup_logging("dispatcher")
    log = logging.getLogger("symphonyd.dispatcher")
    log_samples(log)
    with log_context(issue_id="abc-4", issue_identifier="MT-8"):
        log.warning("hook before_run exited with status 3")  # free text, fields bound
        log_event(log, "hook", issue_identifier="MT-9")  # its own field wins
    received = [parse_native(journald.recv(1 << 20)) for _ in range(5)]
    # Break the sink: nobody listens any more, then the socket disappears altogether.
    journald.close()
    log_event(log, "dispatch", outcome="retrying", issue_id="abc-2")
    os.unlink(JOURNAL_SOCKET)
    log_event(log, "dispatch", outcome="failed", issue_id="abc-3")
    json.dump({"handler": type(handler).__name__, "received": received}, sys.stdout)


if __name__ == "__main__":
    {"stderr": main_stderr, "journal": main_journal}[sys.argv[1]]()
