"""``symphony-link-generator``: the link unit's network allowlist, from the host config.

systemd runs every generator at boot and on ``daemon-reload`` with three output directories
(normal, early, late; systemd.generator(7)). symphony-link.service ships with
``IPAddressDeny=any``; this generator reads the same host config the link daemon reads
(``[worker.hosts]``, parsed by the same code) and writes into the normal directory:

- ``symphony-link.service.d/50-worker-addresses.conf`` with ``IPAddressAllow=`` each worker's
  literal address, so the link may reach exactly the configured workers;
- ``symphony.target.wants/symphony-link.service``, so the suite starts the link exactly when
  workers are configured (a control host without workers never runs it).

A host config that does not parse gives no allowlist and a drop-in that makes the unit
refuse to start (an ``AssertPathExists=`` that cannot hold, with the error in a comment
``systemctl cat`` shows and on stderr, which systemd logs): the network stays closed and the
failure is visible, never a link with a stale or missing allowlist. No config, or one with no
workers, writes nothing. Exit status 0 either way: a generator's failure does not stop
systemd, the drop-in does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from symphonyd.core.errors import ConfigError
from symphonyd.core.worker_hosts import WorkerHosts
from symphonyd.runtime.hostconfig_file import DEFAULT_HOST_CONFIG_PATH, load_host_config

UNIT = "symphony-link.service"
TARGET = "symphony.target"
UNIT_PATH = f"/usr/lib/systemd/system/{UNIT}"
ALLOW_DROPIN = "50-worker-addresses.conf"
REFUSE_DROPIN = "50-host-config-invalid.conf"
# Never created by anything: the assertion fails, so the unit is refused, not started open.
REFUSE_PATH = "/run/symphony-link/host-config-is-invalid"
HEADER = "# Written by symphony-link-generator from the host config (docs/install.md)."


def allow_dropin(worker: WorkerHosts) -> str:
    addresses = " ".join(dict.fromkeys(h.address for h in worker.hosts))
    return f"{HEADER}\n[Service]\nIPAddressAllow={addresses}\n"


def refuse_dropin(error: str) -> str:
    # One comment line: the message came from a file the operator edits, so no newline in
    # it may turn into a unit setting.
    shown = " ".join(error.split())
    return (
        f"{HEADER}\n# The host config does not parse, so the link gets no network and does not"
        f" start:\n# {shown}\n# Fix it, then `systemctl daemon-reload`.\n"
        f"[Unit]\nAssertPathExists={REFUSE_PATH}\n"
    )


def generate(normal_dir: Path, host_config: str | None) -> str | None:
    """Write the unit's drop-in and the target's want into ``normal_dir``; the error, if any."""
    dropins = normal_dir / f"{UNIT}.d"
    path = Path(host_config) if host_config else DEFAULT_HOST_CONFIG_PATH
    if not path.exists():
        return None  # no host config: no workers, as for the daemons
    try:
        worker = load_host_config(path).config.worker
    except ConfigError as exc:
        dropins.mkdir(parents=True, exist_ok=True)
        (dropins / REFUSE_DROPIN).write_text(refuse_dropin(exc.message))
        return exc.message
    if not worker.hosts:
        return None
    dropins.mkdir(parents=True, exist_ok=True)
    (dropins / ALLOW_DROPIN).write_text(allow_dropin(worker))
    wants = normal_dir / f"{TARGET}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / UNIT
    if not link.is_symlink():
        os.symlink(UNIT_PATH, link)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="symphony-link-generator", description=__doc__)
    parser.add_argument("--host-config", help="default /etc/symphony/symphonyd.toml")
    parser.add_argument("normal_dir", type=Path)
    parser.add_argument("early_dir", type=Path, nargs="?")
    parser.add_argument("late_dir", type=Path, nargs="?")
    args = parser.parse_args(argv)
    error = generate(args.normal_dir, args.host_config)
    if error is not None:
        print(f"symphony-link-generator: {UNIT} refused: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
