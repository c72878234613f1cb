"""Runs inside the end-to-end container (``python3 -m tests.e2e.fake_gitlab_serve PORT``): the
tests' fake GitLab REST server (tests/tracker/fake_gitlab.py) on 127.0.0.1:PORT until stopped,
standing in for a self-managed GitLab instance on the same host."""

from __future__ import annotations

import signal
import sys
import threading

from tests.tracker.fake_gitlab import FakeGitLab


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeGitLab([], port=int(sys.argv[1])):
        print("serving", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
