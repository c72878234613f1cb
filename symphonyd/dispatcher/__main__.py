"""``python -m symphonyd.dispatcher`` (ExecStart of symphony-dispatcher.service)."""

import sys

from symphonyd.dispatcher.daemon import main

sys.exit(main())
