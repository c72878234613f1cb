"""Asana's signing secret, learnt in the handshake and kept in the receiver's state directory.

Asana generates the secret and sends it only in the handshake, so it cannot be a systemd
credential placed in advance (docs/design/0412-webhooks-gitlab-jira-asana.md). The receiver
writes it to ``$STATE_DIRECTORY/asana-hook-secret`` (``StateDirectory=symphony/webhook``,
0700, owned by symphony-webhook): a new file created 0600, written in full, fsynced and
renamed over the old one, then the directory fsynced, so a crash leaves the old secret or
the new one. A later authorised handshake (the operator re-created the webhook) replaces it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from symphonyd.core.errors import ConfigError
from symphonyd.runtime.durable import fsync_dir, write_all

FILE_NAME = "asana-hook-secret"
MAX_BYTES = 4096


class HookSecretStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self.secret: bytes | None = None

    def load(self) -> None:
        """Read a secret saved before a restart; a missing file is no secret yet."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = os.read(fd, MAX_BYTES + 1)
        finally:
            os.close(fd)
        secret = data.strip()
        if not secret or len(data) > MAX_BYTES:
            raise ConfigError(f"{self.path} does not hold an Asana hook secret")
        self.secret = secret

    def save(self, secret: bytes) -> None:
        """Replace the saved secret atomically and durably; raises OSError."""
        tmp = self.path.with_name(f".{FILE_NAME}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, secret + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)
        self.secret = secret
