"""``python -m symphonyd.dashboard`` (ExecStart of symphony-dashboard.service)."""

import sys

from symphonyd.dashboard.daemon import main

sys.exit(main())
