"""symphonyd: the Symphony service as a suite of small systemd daemons."""

__version__ = "0.1.0"
