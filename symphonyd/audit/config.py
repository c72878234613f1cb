"""Command line and environment of the audit writer daemon.

Under systemd: the directory is ``$STATE_DIRECTORY`` (``StateDirectory=symphony/audit``),
sockets come from socket activation, and secrets to scrub are the files systemd put in
``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``). By hand (development, tests): ``--dir``,
``--listen NAME=PATH`` and ``--secret-file``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from symphonyd.audit.anchor import DEFAULT_INTERVAL, SINKS
from symphonyd.audit.shaping import DEFAULT_MAX_RECORD_BYTES
from symphonyd.core.audit_layout import DEFAULT_AUDIT_DIR
from symphonyd.core.errors import ConfigError
from symphonyd.runtime.daemon import DaemonArgumentParser

_MAX_SECRET_BYTES = 64 * 1024
MIN_SECRET_CHARS = 4
_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=\s*[\"']?(.*?)[\"']?\s*$")


@dataclass(frozen=True)
class AuditWriterConfig:
    directory: Path
    listen: dict[str, Path] = field(default_factory=dict)  # name -> path we bind ourselves
    allow_uids: frozenset[int] = frozenset()  # for self-bound sockets
    secret_files: tuple[Path, ...] = ()
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_batch_records: int = 4096
    anchor: str = "journal"  # where the chain head is anchored: a name in anchor.SINKS, or none
    anchor_interval: float = DEFAULT_INTERVAL


def _listen(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError("expected NAME=PATH")
    return name, Path(path)


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> AuditWriterConfig:
    """The command line and environment as one AuditWriterConfig (SystemExit 78, ConfigError)."""
    return audit_config(arguments(argv), environ)


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line alone; a malformed one exits 78 (it is the unit's configuration)."""
    parser = DaemonArgumentParser(prog="python -m symphonyd.audit")
    parser.add_argument("--dir", type=Path, help="audit directory ($STATE_DIRECTORY)")
    parser.add_argument(
        "--listen", type=_listen, action="append", default=[], help="NAME=PATH to bind (dev)"
    )
    parser.add_argument(
        "--allow-uid", type=int, action="append", default=[], help="peer uid for --listen"
    )
    parser.add_argument("--secret-file", type=Path, action="append", default=[])
    parser.add_argument("--max-record-bytes", type=int, default=DEFAULT_MAX_RECORD_BYTES)
    parser.add_argument(
        "--max-batch-records", type=int, default=4096, help="1 = one fsync per record"
    )
    parser.add_argument(
        "--anchor",
        choices=[*SINKS, "none"],
        default="journal",
        help="where to anchor the chain head outside the directory (default: journal)",
    )
    parser.add_argument(
        "--anchor-interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help="seconds between head anchors while the head moves (default: 60)",
    )
    return parser.parse_args(argv)


def audit_config(args: argparse.Namespace, environ: Mapping[str, str]) -> AuditWriterConfig:
    """Check values and read the environment; raises ConfigError (exit 78 at startup)."""
    directory = args.dir or Path(environ.get("STATE_DIRECTORY", str(DEFAULT_AUDIT_DIR)))
    secret_files = list(args.secret_file)
    creds = environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        secret_files += sorted(p for p in Path(creds).iterdir() if p.is_file())
    if args.max_record_bytes < 4096:
        raise ConfigError("--max-record-bytes must be at least 4096")
    if not 1 <= args.anchor_interval <= 86400:
        raise ConfigError("--anchor-interval must be between 1 and 86400 seconds")
    return AuditWriterConfig(
        directory=directory,
        listen=dict(args.listen),
        allow_uids=frozenset(args.allow_uid or [os.getuid()]),
        secret_files=tuple(secret_files),
        max_record_bytes=args.max_record_bytes,
        max_batch_records=max(1, args.max_batch_records),
        anchor=args.anchor,
        anchor_interval=args.anchor_interval,
    )


def load_secrets(files: Sequence[Path]) -> list[str]:
    """Secret values to scrub: each file's content, and each of its non-empty lines."""
    values: list[str] = []
    for path in files:
        try:
            with path.open("rb") as fh:
                data = fh.read(_MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {path.name}: {exc.strerror}") from None
        if len(data) > _MAX_SECRET_BYTES:
            raise ConfigError(f"secret file {path.name} is larger than {_MAX_SECRET_BYTES} bytes")
        text = data.decode("utf-8", "replace")
        values.append(text.strip())
        values += [line.strip() for line in text.splitlines() if line.strip()]
        # NAME=value lines (an env file as credential): the values are the secrets.
        values += [m.group(1).strip() for m in map(_ASSIGNMENT.match, text.splitlines()) if m]
    # Shorter "secrets" would blank ordinary text everywhere and protect nothing.
    return [v for v in dict.fromkeys(values) if len(v) >= MIN_SECRET_CHARS]
