"""symphonyd: the Symphony service as a suite of small systemd daemons."""

import os
import sys

__version__ = "0.1.0"

# The Debian package ships python-liquid and importlib_resources (absent or too old in
# Debian 12) in a private directory holding nothing else. It goes first on sys.path so the
# daemons run exactly the versions CI tested (docs/design/0004-packaging.md).
_VENDOR = "/usr/lib/symphonyd/vendor"
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(1, _VENDOR)
