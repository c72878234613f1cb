"""``symphonyctl hosts``: the hosts runs go to, and draining one (docs/design/1100).

``hosts`` lists each host with its health and the runs it holds against its cap; ``hosts
drain NAME`` stops new runs going there (runs in flight continue; it survives a dispatcher
restart) and ``hosts undrain NAME`` lets them go there again.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from symphonyd.core.api.dispatcher import (
    DISPATCHER_DRAIN,
    DISPATCHER_HOSTS,
    DISPATCHER_UNDRAIN,
    HostList,
    HostRefParams,
)
from symphonyd.core.api.shared import Empty
from symphonyd.core.codec import encode
from symphonyd.core.errors import SymphonyError
from symphonyd.ctl.control_cmd import SOCKET_ENV, _control, _failed, _table, call, socket_path
from symphonyd.ctl.main import EXIT_OK, EXIT_USAGE


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "hosts", help="list the hosts runs go to (health, load); drain or undrain one"
    )
    parser.add_argument(
        "--socket", help=f"dispatcher control socket (default ${SOCKET_ENV} or host config)"
    )
    parser.add_argument(
        "action", nargs="?", choices=("list", "drain", "undrain"), default="list",
        help="list (default); drain: no new runs on NAME; undrain: runs go there again",
    )  # fmt: skip
    parser.add_argument("name", nargs="?", help="the host (drain, undrain)")
    parser.add_argument("--json", action="store_true", help="machine-readable list")
    parser.set_defaults(func=run_hosts)


def run_hosts(args: argparse.Namespace) -> int:
    if args.action != "list":
        if not args.name:
            print(f"symphonyctl hosts {args.action}: name the host")
            return EXIT_USAGE
        spec = DISPATCHER_DRAIN if args.action == "drain" else DISPATCHER_UNDRAIN
        return _control(args, spec, HostRefParams(args.name))
    path = socket_path(args)
    try:
        listing = call(path, DISPATCHER_HOSTS, Empty())
    except SymphonyError as exc:
        return _failed(exc, path)
    if args.json:
        print(json.dumps(encode(listing), indent=2))
        return EXIT_OK
    print("\n".join(render(listing)))
    return EXIT_OK


def render(listing: HostList) -> list[str]:
    rows = []
    for h in listing.hosts:
        health = "ok" if h.ok else f"down: {h.detail or 'not connected'}"
        state = "drained" if h.drained else "active"
        load = f"{h.running}/{h.capacity}" if h.capacity is not None else str(h.running)
        rows.append([h.name, "worker" if h.remote else "local", state, load, health])
    return _table(["HOST", "KIND", "DISPATCH", "RUNS", "HEALTH"], rows)
