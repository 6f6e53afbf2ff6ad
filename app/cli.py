"""The `live-relay` command: one sub-command per module, each with `configure` and `run`.

A command module is imported only when its command runs, so `live-relay emulator` does not
pay for the relay's imports and a broken optional module cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command -> (module, one-line help). The module defines
#   configure(parser: argparse.ArgumentParser) -> None
#   run(args: argparse.Namespace) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("app.serve", "run the relay (uvicorn; settings from RELAY_* variables)"),
    "dev": ("app.dev", "run the relay with the in-process emulator and a generated dev key"),
    "emulator": ("app.emulator.cli", "run the offline Live API emulator on its own"),
    "keys": ("app.auth.keys_cli", "make project API keys (`keys create --project P`)"),
    "loadtest": ("app.loadtest.cli", "simulated voice sessions against a Live endpoint, timed"),
    "doctor": ("app.doctor", "check step by step that the relay can reach Vertex AI"),
    "usage": ("app.ledger.cli", "the usage report of a project, from the ledger (docs/usage.md)"),
}


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, str | None]:
    parser = argparse.ArgumentParser(prog="live-relay", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((arg for arg in argv if arg in COMMANDS), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module_name).configure(command_parser)
    return parser, chosen


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, chosen = build_parser(argv)
    args = parser.parse_args(argv)
    if chosen is None or args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    result: int = module.run(args)
    return result
