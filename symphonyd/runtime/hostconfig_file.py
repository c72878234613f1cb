"""Read the host config file (``/etc/symphony/symphonyd.toml``) from disk.

The file is optional at its default location: a host that is happy with every default needs
none. A path the operator named explicitly must exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from symphonyd.core.config_values import decode_bounded
from symphonyd.core.errors import ConfigError
from symphonyd.core.hostconfig import HOST_CONFIG_PARSE_ERROR, HostConfig, parse_host_config

DEFAULT_HOST_CONFIG_PATH = Path("/etc/symphony/symphonyd.toml")
MAX_HOST_CONFIG_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class LoadedHostConfig:
    config: HostConfig
    warnings: tuple[str, ...]
    # None when the default file was absent and the built-in defaults apply.
    path: Path | None


def load_host_config(path: str | os.PathLike[str] | None = None) -> LoadedHostConfig:
    """Load ``path`` (or the default location); raises ConfigError."""
    explicit = path is not None
    target = Path(path) if path is not None else DEFAULT_HOST_CONFIG_PATH
    try:
        with target.open("rb") as handle:
            data = handle.read(MAX_HOST_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                f"host config {target} does not exist", code="missing_host_config"
            ) from None
        return LoadedHostConfig(HostConfig(), (), None)
    except OSError as exc:
        raise ConfigError(
            f"cannot read host config {target}: {exc.strerror or type(exc).__name__}",
            code="missing_host_config",
        ) from None
    text = decode_bounded(
        data,
        limit=MAX_HOST_CONFIG_BYTES,
        what=f"host config {target}",
        error=lambda message: ConfigError(message, code=HOST_CONFIG_PARSE_ERROR),
    )
    try:
        config, warnings = parse_host_config(text)
    except ConfigError as exc:
        raise ConfigError(f"{target}: {exc.message}", code=exc.error_code, **exc.details) from None
    return LoadedHostConfig(config, warnings, target)
