"""Each provider's check of a delivery, and the credentials that turn it on.

A provider is on when at least one of its credentials (``KEYS``) is loaded; its verifier
gets all of them. ``KEY_FORMATS`` turns a credential file's bytes into the key itself
(GitLab's signing token is ``whsec_<base64>``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from symphonyd.webhook.providers import asana, github, gitlab, jira, linear
from symphonyd.webhook.providers.common import Delivery, Inbound, Reference, Rejected

__all__ = ["KEYS", "KEY_FORMATS", "VERIFIERS", "Delivery", "Inbound", "Reference", "Rejected",
           "enabled", "now"]  # fmt: skip

Verifier = Callable[[Inbound, Mapping[str, bytes], float], Delivery]
VERIFIERS: dict[str, Verifier] = {
    "github": github.verify,
    "linear": linear.verify,
    "gitlab": gitlab.verify,
    "jira": jira.verify,
    "asana": asana.verify,
}
KEYS: dict[str, tuple[str, ...]] = {
    "github": github.KEYS,
    "linear": linear.KEYS,
    "gitlab": gitlab.KEYS,
    "jira": jira.KEYS,
    "asana": asana.KEYS,
}
KEY_FORMATS: dict[str, Callable[[bytes], bytes]] = {"gitlab_signing": gitlab.signing_key}
CREDENTIALS = frozenset(name for names in KEYS.values() for name in names)


def enabled(keys: Mapping[str, bytes]) -> list[str]:
    """The providers with at least one credential among ``keys``."""
    return sorted(p for p, names in KEYS.items() if any(n in keys for n in names))


def keys_of(provider: str, keys: Mapping[str, bytes]) -> dict[str, bytes]:
    return {name: keys[name] for name in KEYS[provider] if name in keys}


def now() -> float:
    return time.time()
