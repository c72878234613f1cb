"""``python -m symphonyd.audit``: run the audit writer (symphony-audit.service)."""

from __future__ import annotations

import asyncio
import os
import sys

from symphonyd.audit.config import parse_args
from symphonyd.audit.daemon import serve
from symphonyd.audit.store import AuditStoreError
from symphonyd.core.errors import ConfigError
from symphonyd.runtime.logging import setup_logging


def main() -> int:
    setup_logging("audit")
    try:
        config = parse_args(sys.argv[1:], os.environ)
        return asyncio.run(serve(config))
    except ConfigError as exc:
        print(f"symphony-audit: {exc}", file=sys.stderr)
        return 2
    except AuditStoreError as exc:
        # The head cannot be trusted or the directory cannot be written: fail closed.
        print(f"symphony-audit: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
