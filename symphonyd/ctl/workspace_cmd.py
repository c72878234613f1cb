"""``symphonyctl workspace path IDENTIFIER [--root DIR]``: where an issue's workspace lives.

The answer is computed with the same checks the launcher applies before every mkdir, hook
and launch, so an unsafe root or a symlink planted at the location is reported, not printed.
Default root: ``workspace.root`` from the host config (``$SYMPHONY_CONFIG``, else
``/etc/symphony/symphonyd.toml``) when set, else the SPEC 5.3.3 default
``<system temp>/symphony_workspaces``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tomllib
from pathlib import Path

from symphonyd.core.errors import ConfigError, SymphonyError
from symphonyd.core.workspace_paths import safe_workspace_path
from symphonyd.ctl.main import EXIT_OK, EXIT_USAGE

DEFAULT_HOST_CONFIG = "/etc/symphony/symphonyd.toml"


def default_root() -> Path:
    """Host config ``workspace.root`` if the file exists, else the SPEC default.

    A host config that exists but cannot be read or parsed is an error rather than a silent
    fallback, so the printed path is never a guess.
    """
    config = Path(os.environ.get("SYMPHONY_CONFIG", DEFAULT_HOST_CONFIG))
    try:
        with config.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        data = {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read host config {config} ({exc}); pass --root", path=str(config)
        ) from None
    section = data.get("workspace", {})
    root = section.get("root") if isinstance(section, dict) else None
    if root is None:
        return Path(tempfile.gettempdir()) / "symphony_workspaces"
    if not isinstance(root, str) or not root:
        raise ConfigError(f"{config}: workspace.root must be a non-empty string")
    return Path(os.path.expanduser(root))


def _path(args: argparse.Namespace) -> int:
    try:
        root = Path(os.path.expanduser(args.root)) if args.root else default_root()
        path = safe_workspace_path(root, args.identifier)
    except SymphonyError as exc:
        print(f"error: {exc.error_code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    print(path)
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("workspace", help="inspect issue workspaces")
    sub = group.add_subparsers(dest="workspace_command", metavar="SUBCOMMAND", required=True)
    path = sub.add_parser("path", help="print the absolute workspace path for an identifier")
    path.add_argument("identifier", metavar="IDENTIFIER")
    path.add_argument("--root", metavar="DIR", help="workspace root (default: host config)")
    path.set_defaults(func=_path)
