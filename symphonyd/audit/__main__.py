"""``python -m symphonyd.audit``: run the audit writer (symphony-audit.service).

Exit status: 0 after SIGTERM, 78 on invalid configuration (arguments, secret files, sockets),
1 when the store cannot be trusted or written (systemd restarts; recovery repairs the tail).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence

from symphonyd.audit.config import arguments
from symphonyd.audit.daemon import startup
from symphonyd.runtime.daemon import run_daemon


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # as the unit's UMask=; files get explicit 0600 modes anyway
    args = arguments(argv)
    return run_daemon("audit", functools.partial(startup, args=args))


if __name__ == "__main__":
    sys.exit(main())
