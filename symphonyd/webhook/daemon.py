"""symphony-webhook's wiring: secrets, the TCP listener, the tracker's hint socket.

The listener is systemd's ``http`` socket (units/symphony-webhook.socket), or one bound with
``--listen HOST:PORT`` in development. The keys are systemd credentials: the unit loads the
directory /etc/symphony/credentials/webhook, so a file ``github`` there becomes
``webhook_github`` and enables /hooks/github (likewise ``linear``, ``jira``, ``asana``, and
``gitlab`` and/or ``gitlab_signing`` for /hooks/gitlab); ``--secret-file NAME=PATH`` names
them by hand. Asana's signing secret comes from its handshake and is kept in the state
directory (``$STATE_DIRECTORY`` or ``--state-dir``; webhook/hook_secret.py). A receiver
with no key at all, an unreadable, short or malformed one, or Asana without a state
directory refuses to start (exit 78).
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
from symphonyd.webhook.hook_secret import HookSecretStore
from symphonyd.webhook.listen import bind_listener
from symphonyd.webhook.providers import CREDENTIALS, KEY_FORMATS
from symphonyd.webhook.service import Receiver

log = logging.getLogger("symphonyd.webhook")
CREDENTIAL_PREFIX = "webhook_"
MIN_SECRET_BYTES = 16


def _read_secret(name: str, path: Path) -> bytes:
    """The key in the credential file ``name`` (its bytes, or as KEY_FORMATS decodes them)."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"webhook secret {name!r}: cannot read {path}: {exc.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"webhook secret {name!r} in {path} is shorter than {MIN_SECRET_BYTES} bytes"
        )
    decode = KEY_FORMATS.get(name)
    if decode is None:
        return secret
    try:
        return decode(secret)
    except ValueError as exc:
        raise ConfigError(f"webhook secret {name!r} in {path}: {exc}") from None


def load_secrets(args: argparse.Namespace, env: dict[str, str]) -> dict[str, bytes]:
    """Credential name -> key, from ``--secret-file`` or $CREDENTIALS_DIRECTORY."""
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
    unknown = sorted(set(files) - CREDENTIALS)
    if unknown:
        raise ConfigError(
            f"no webhook credential named {', '.join(unknown)} "
            f"(known: {', '.join(sorted(CREDENTIALS))})"
        )
    secrets = {name: _read_secret(name, path) for name, path in files.items()}
    if not secrets:
        raise ConfigError(
            "no webhook secret: put the provider's secret in "
            "/etc/symphony/credentials/webhook/<provider> (or --secret-file)"
        )
    return secrets


def hook_secret_store(
    args: argparse.Namespace, env: dict[str, str], secrets: dict[str, bytes]
) -> HookSecretStore | None:
    """Asana's handshake secret: in ``--state-dir`` or the unit's $STATE_DIRECTORY."""
    if "asana" not in secrets:
        return None
    where = args.state_dir or env.get("STATE_DIRECTORY", "").split(":")[0]
    if not where:
        raise ConfigError("asana needs a state directory (StateDirectory= or --state-dir)")
    store = HookSecretStore(Path(where))
    store.load()
    return store


async def startup(daemon: Daemon, *, args: argparse.Namespace) -> None:
    host = daemon.load_host_config(args.host_config)
    env = dict(os.environ)
    secrets = load_secrets(args, env)
    listen = bind_listener(listen_fds(), args.listen)
    tracker = ReconnectingClient(args.tracker_socket or TRACKER_WEBHOOK.path(host.runtime_dir))
    audit_path = args.audit_socket or AUDIT_WEBHOOK.path(host.runtime_dir)
    audit = AuditFeed(None if audit_path == "none" else audit_path)
    receiver = Receiver(secrets, tracker, audit, hook_secret_store(args, env, secrets))
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
              providers=",".join(receiver.providers))  # fmt: skip
    daemon.status(f"receiving webhooks on {listen.host}:{listen.port}")
