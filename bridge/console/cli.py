"""``python -m bridge console link <user>``: a sign-in link from the command line (for the bridge's admin).

The same rules as ``!console``: configured supervisors only, one use, five minutes, audited (origin
"cli").  It is for whoever runs the bridge, who can read its store anyway: a way in when Matrix is down.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import config as cfg


def cmd_link(args: argparse.Namespace) -> int:
    from ..records import Records
    from ..store import Store
    from .auth import ConsoleAuth, supervised_agencies

    config = cfg.load_file(args.config)
    store = Store.open(config.path("store.path"), config.get("chats.first_number"))
    try:
        auth = ConsoleAuth(store, Records.open(config, store), lambda user: supervised_agencies(config, user),
                           config.get("web.public_url"), config.get("console.link_ttl_seconds"),
                           config.get("console.idle_minutes"))
        url = auth.issue_sign_in_link(args.user, origin="cli")
    finally:
        store.close()
    if url is None:
        print(f"{args.user} is not a supervisor of any agency; no link (the refusal is recorded).", file=sys.stderr)
        return 1
    print(url)
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("console", help="supervisor console")
    commands = p.add_subparsers(dest="console_command", required=True)
    link = commands.add_parser("link", help="print a one-time sign-in link for a supervisor")
    link.add_argument("user", help="the supervisor's Matrix user ID, e.g. @sergeant:police.example")
    link.add_argument("-c", "--config", type=Path, default=Path("config.yaml"))
    link.set_defaults(func=cmd_link)
