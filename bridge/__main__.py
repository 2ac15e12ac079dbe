"""Command line: ``python -m bridge generate-registration | run | demo | backup | restore | transcript … | audit … |
records …``."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import yaml

from . import config as cfg
from .appservice.registration import generate_registration
from .private_files import exposure
from .store.db import StoreTooNew


def exposed_secrets(config_path: Path, config: cfg.Config) -> list[str]:
    """Secret files others could read, each with its fix: the config (when it holds secrets itself) and
    the registration found beside it or in the working folder (when it holds this bridge's token).
    The records signing key is checked where it is loaded (``records/signing.py``), with the same check."""
    problems = []
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    if cfg.secrets_in_file(raw) and (p := exposure(config_path, "configuration file")):
        problems.append(p)
    seen: set[Path] = set()
    for candidate in (config_path.resolve().parent / "registration.yaml", Path("registration.yaml").resolve()):
        if candidate in seen or not candidate.is_file():
            continue
        seen.add(candidate)
        if config.get("appservice.as_token") in candidate.read_text(encoding="utf-8", errors="replace"):
            if p := exposure(candidate, "appservice registration"):
                problems.append(p)
    return problems


async def _run(config: cfg.Config) -> None:
    from .app import Bridge

    bridge = Bridge(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bridge.start()
        # Until stopped, or until the homeserver refuses the bridge's start-up (raised here: the process ends).
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([stopping, bridge.connecting], return_when=asyncio.FIRST_COMPLETED)
        if bridge.connecting.done() and not bridge.connecting.cancelled() and bridge.connecting.exception():
            stopping.cancel()
            raise bridge.connecting.exception()  # type: ignore[misc]
        await stopping
    finally:
        await bridge.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge", description="Precinct: police web chat over Matrix")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate-registration", help="write the appservice registration (new random tokens)")
    g.add_argument("-c", "--config", type=Path, default=Path("config.yaml"))
    g.add_argument("-o", "--output", type=Path, default=Path("registration.yaml"))
    r = sub.add_parser("run", help="run the bridge")
    r.add_argument("-c", "--config", type=Path, default=Path("config.yaml"))
    d = sub.add_parser("demo", help="run the bridge with an embedded local Synapse")
    d.add_argument("--data", type=Path, default=Path("demo-data"))
    d.add_argument("--free-ports", action="store_true",
                   help="on the first run, use ports the system says are free instead of 8008, 8080, 29330 and "
                        "29331 (later runs reuse the ports saved in the data folder's config.yaml)")
    from .records import cli as records_cli
    records_cli.add_parsers(sub)
    from .console import cli as console_cli
    console_cli.add_parsers(sub)
    from .store import backup
    backup.add_parsers(sub)
    args = parser.parse_args(argv)
    # Whatever any library creates from here on (SQLite's files, nio's stores, exports, Synapse's files
    # in the demo) is owner-only, whatever umask the operator's shell has; our own secrets set modes too.
    os.umask(0o077)
    try:
        if hasattr(args, "func"):
            return args.func(args)
        if args.command == "generate-registration":
            generate_registration(args.config, args.output)
        elif args.command == "run":
            config = cfg.load_file(args.config)
            if problems := exposed_secrets(args.config, config):
                raise cfg.ConfigError("secret files must be readable by their owner only:\n  "
                                      + "\n  ".join(problems))
            logging.basicConfig(level=config.get("logging.level"),
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            logging.getLogger("nio").setLevel(logging.WARNING)
            from .matrix.crypto import quiet_routine_nio_lines      # nio only for the bridge itself
            quiet_routine_nio_lines()
            asyncio.run(_run(config))
        elif args.command == "demo":
            try:
                from .devtools.demo import run_demo
            except ImportError:
                print("The demo is a developer tool: run it from a checkout of the repository (make demo); "
                      "the installed package leaves it out.", file=sys.stderr)
                return 2
            return run_demo(args.data, args.free_ports)
    except cfg.ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 2
    except StoreTooNew as e:
        print(f"Store error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
