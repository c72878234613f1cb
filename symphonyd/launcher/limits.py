"""The launcher's open-file limit: raised to the hard limit so agent pipes do not run out.

Every live agent holds three pipe ends in the launcher (stdin, stdout, stderr), plus what a
sandboxed run adds. systemd starts services with a soft ``RLIMIT_NOFILE`` of 1024 (hard
524288 since v240) and asks programs that need more to raise the soft limit themselves, so
without this a few hundred concurrent agents fail with EMFILE ("cannot start bash: Too many
open files"), each such run ends ``port_exit`` and is retried after a backoff.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("symphonyd.launcher")


def raise_nofile_limit() -> int:
    """Raise the soft open-file limit to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (hard, soft):
        return soft
    if soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard
