"""Resolve tracker secrets from systemd credentials or the environment, never from WORKFLOW.md.

A secret key in ``tracker.provider`` must be a ``$NAME`` reference. It resolves, in order, from
``$CREDENTIALS_DIRECTORY/NAME``, ``$CREDENTIALS_DIRECTORY/<unit credential>`` (the host
config's ``tracker.credential``, the name the unit loads with ``LoadCredential=``) and the
environment variable ``NAME`` (development). A literal value is refused: WORKFLOW.md lives in
the repository the agent can read (SPEC 15.3).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from symphonyd.core.hostconfig import HostConfig
from symphonyd.core.secret import Secret
from symphonyd.tracker.errors import INVALID_CONFIG, MISSING_SECRET, tracker_error

_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]{0,127})$")
UNIT_CREDENTIAL_NAME = HostConfig().tracker_credential
_MAX_SECRET_BYTES = 8192


def secret_reference(provider: Mapping[str, Any], key: str, default_name: str) -> str:
    """The environment/credential name a secret key points at; refuses literal values."""
    raw = provider.get(key, f"${default_name}")
    if not isinstance(raw, str):
        raise tracker_error(INVALID_CONFIG, f"tracker.provider.{key} must be a $NAME reference")
    match = _REF.match(raw.strip())
    if match is None:
        # Deliberately does not echo the value: it may be the token itself.
        raise tracker_error(
            INVALID_CONFIG,
            f"tracker.provider.{key} holds a literal value; literal credentials in WORKFLOW.md "
            f"are refused. Write ${default_name} and provide the token through systemd "
            f"LoadCredential= or the {default_name} environment variable",
        )
    return match.group(1)


def resolve_secret(
    provider: Mapping[str, Any],
    key: str,
    default_name: str,
    env: Mapping[str, str],
    unit_credential: str = UNIT_CREDENTIAL_NAME,
) -> Secret:
    name = secret_reference(provider, key, default_name)
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        for candidate in (name, unit_credential):
            value = _read_credential(Path(cred_dir) / candidate)
            if value:
                return Secret(value)
    value = env.get(name, "").strip()
    if value:
        return Secret(value)
    raise tracker_error(
        MISSING_SECRET,
        f"tracker secret ${name} is not set (looked in $CREDENTIALS_DIRECTORY and the "
        f"environment); an empty value counts as missing",
        secret=name,
    )


def read_unit_credential(env: Mapping[str, str], unit_credential: str) -> list[str]:
    """The unit's own credential (``LoadCredential=``) as a one-item list, or empty."""
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    value = _read_credential(Path(cred_dir) / unit_credential) if cred_dir else ""
    return [value] if value else []


def _read_credential(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        data = os.read(fd, _MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_SECRET_BYTES:
        return ""
    return data.decode("utf-8", "replace").strip()
