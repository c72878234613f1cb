"""``python -m symphonyd.dispatcher`` (ExecStart of symphony-dispatcher.service)."""

import sys

from symphonyd.dispatcher.app import main

sys.exit(main())
