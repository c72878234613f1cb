"""symphonyctl entry point.

Each command group lives in its own module ``symphonyd.ctl.<group>_cmd`` exposing
``register(subparsers)``; that module's parser sets ``func`` to a callable taking the parsed
namespace and returning the exit code. Modules are discovered, so adding a group never
touches this file; ``--help`` lists them alphabetically.

Exit codes (docs/symphonyctl.md): 0 success, 1 a check failed (e.g. audit chain broken),
2 usage or validation error, 3 a daemon is unreachable. A reader that closes the pipe early
(``symphonyctl status | head``) ends the command quietly with 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

import symphonyd.ctl
from symphonyd import __version__

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def command_modules() -> list[str]:
    """Names of the ``*_cmd`` modules in this package, sorted."""
    return sorted(
        m.name for m in pkgutil.iter_modules(symphonyd.ctl.__path__) if m.name.endswith("_cmd")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symphonyctl", description="Operate the symphonyd daemon suite."
    )
    parser.add_argument("--version", action="version", version=f"symphonyctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(f"symphonyd.ctl.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        code: int = func(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler, not at exit
    except BrokenPipeError:
        return _reader_went_away()
    return code


def _reader_went_away() -> int:
    """``symphonyctl status | head``: the reader has what it wanted, which is not an error.

    Stop quietly (exit 0, so ``set -o pipefail`` scripts do not fail on it). Python ignores
    SIGPIPE, so the write raised instead; point stdout at /dev/null so the interpreter's
    final flush cannot print "Exception ignored ... BrokenPipeError" either.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
