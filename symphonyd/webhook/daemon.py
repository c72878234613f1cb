"""symphony-webhook's wiring: secrets, the TCP listener, the tracker's hint socket.

The listener is systemd's ``http`` socket (units/symphony-webhook.socket), or one bound with
``--listen HOST:PORT`` in development. The HMAC keys are systemd credentials: the unit loads
the directory /etc/symphony/credentials/webhook, so a file ``github`` there becomes
``webhook_github`` and enables /hooks/github (same for ``linear``); ``--secret-file
NAME=PATH`` names them by hand. A receiver with no key at all, or an unreadable or empty
one, refuses to start (exit 78).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from aiohttp import web

from symphonyd.core.errors import ConfigError
from symphonyd.core.sockets import AUDIT_WEBHOOK, TRACKER_WEBHOOK
from symphonyd.runtime.activation import listen_fds
from symphonyd.runtime.daemon import Daemon
from symphonyd.runtime.ipc_client import ReconnectingClient
from symphonyd.runtime.logging import log_event
from symphonyd.webhook.audit_feed import AuditFeed
from symphonyd.webhook.listen import bind_listener
from symphonyd.webhook.providers import VERIFIERS
from symphonyd.webhook.service import Receiver

log = logging.getLogger("symphonyd.webhook")
CREDENTIAL_PREFIX = "webhook_"
MIN_SECRET_BYTES = 16


def _read_secret(name: str, path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"webhook secret {name!r}: cannot read {path}: {exc.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"webhook secret {name!r} in {path} is shorter than {MIN_SECRET_BYTES} bytes"
        )
    return secret


def load_secrets(args: argparse.Namespace, env: dict[str, str]) -> dict[str, bytes]:
    """Provider -> HMAC key, from ``--secret-file`` or $CREDENTIALS_DIRECTORY."""
    files: dict[str, Path] = {}
    for item in args.secret_file or []:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ConfigError(f"--secret-file wants NAME=PATH, got {item!r}")
        files[name] = Path(path)
    creds = env.get("CREDENTIALS_DIRECTORY")
    if not files and creds:
        for entry in sorted(Path(creds).iterdir()):
            if entry.name.startswith(CREDENTIAL_PREFIX):
                files[entry.name.removeprefix(CREDENTIAL_PREFIX)] = entry
    unknown = sorted(set(files) - set(VERIFIERS))
    if unknown:
        raise ConfigError(f"no webhook provider named {', '.join(unknown)} (known: github, linear)")
    secrets = {name: _read_secret(name, path) for name, path in files.items()}
    if not secrets:
        raise ConfigError(
            "no webhook secret: put the provider's secret in "
            "/etc/symphony/credentials/webhook/github or .../linear (or --secret-file)"
        )
    return secrets


async def startup(daemon: Daemon, *, args: argparse.Namespace) -> None:
    host = daemon.load_host_config(args.host_config)
    secrets = load_secrets(args, dict(os.environ))
    listen = bind_listener(listen_fds(), args.listen)
    tracker = ReconnectingClient(args.tracker_socket or TRACKER_WEBHOOK.path(host.runtime_dir))
    audit_path = args.audit_socket or AUDIT_WEBHOOK.path(host.runtime_dir)
    audit = AuditFeed(None if audit_path == "none" else audit_path)
    receiver = Receiver(secrets, tracker, audit)
    runner = web.AppRunner(receiver.app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, listen.sock, shutdown_timeout=5.0).start()

    async def close() -> None:
        await runner.cleanup()
        await tracker.close()
        await audit.close()

    daemon.on_shutdown("http", close)
    daemon.spawn(audit.run(), "audit-feed")
    source = "systemd" if listen.activated else "bound"
    log_event(log, "http_listen", host=listen.host, port=listen.port, source=source,
              providers=",".join(sorted(secrets)))  # fmt: skip
    daemon.status(f"receiving webhooks on {listen.host}:{listen.port}")
