import sys

from symphonyd.ctl.main import main

sys.exit(main())
