"""The simulator's command line: ``python -m tap_mixpanel_profiles.simulator [flags]``.

Apart from :mod:`.server` because running a process is its own concern: flags generated from the
fields of :class:`SimulatorConfig` (so the CLI and the Python API cannot drift apart), the banner
with the fake credentials, the ``--url-file`` handshake that scripts poll for, and running until
SIGTERM/SIGINT. The server module stays a library: a test or benchmark starts it in-process.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import threading
from collections.abc import Sequence

from .config import SimulatorConfig
from .server import MixpanelSimulator

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tap_mixpanel_profiles.simulator",
        description="Local Mixpanel Engage API simulator (binds 127.0.0.1 only).",
    )
    for f in dataclasses.fields(SimulatorConfig):
        if not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else str(f.type)
        if kind == "bool":
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
        elif kind.startswith("frozenset"):
            parser.add_argument(
                flag,
                type=lambda s: frozenset(int(p) for p in s.split(",") if p.strip()),
                default=f.default,
                help=f.metadata["help"],
            )
        else:
            conv = int if kind == "int" else float if kind.startswith("float") else str
            parser.add_argument(flag, type=conv, default=f.default, help=f.metadata["help"])
    parser.add_argument("--url-file", help="write the base URL to this file once listening")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    fields = {f.name for f in dataclasses.fields(SimulatorConfig)}
    config = SimulatorConfig(**{k: v for k, v in vars(args).items() if k in fields})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with MixpanelSimulator(config, verbose=args.verbose) as sim:
        print(
            f"Mixpanel simulator listening on {sim.url} (project_id={config.project_id}, "
            f"profiles={config.profiles})",
            flush=True,
        )
        print(
            f"  service account (fake): username={config.service_account_username} "
            f"secret={config.service_account_secret} project_id={config.project_id}",
            flush=True,
        )
        print(f"  legacy API secret (fake): {config.api_secret}", flush=True)
        if args.url_file:
            tmp = f"{args.url_file}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:  # atomic: scripts may poll for the file
                fh.write(sim.url + "\n")
            os.replace(tmp, args.url_file)
        stop.wait()  # the signal handlers run on this (main) thread and set the event
    return 0
