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
    "dev": ("app.dev", "try it: the relay with a built-in offline Gemini stand-in and a test key"),
    "serve": ("app.serve", "run the relay for real, in front of Vertex AI (settings: RELAY_*)"),
    "doctor": ("app.doctor", "check step by step that this machine can reach Vertex AI"),
    "keys": ("app.auth.keys_cli", "make an API key for your clients (`keys create --project P`)"),
    "emulator": ("app.emulator.cli", "run the offline Gemini Live stand-in on its own"),
    "loadtest": ("app.loadtest.cli", "open many simulated voice sessions and time the answers"),
    "usage": ("app.ledger.cli", "print a project's usage and cost, from the ledger"),
}

DESCRIPTION = (
    "live-relay lets browser and mobile apps talk to Gemini live (voice and text) through your "
    "own server: it checks each app's key, keeps each project within its limits, and passes "
    "the conversation on to Google's Vertex AI."
)
EPILOG = (
    "New here? Run `live-relay dev` (or `make run`): it prints an address, a key and code "
    "to paste. `live-relay COMMAND --help` says more about each command."
)


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, str | None]:
    parser = argparse.ArgumentParser(prog="live-relay", description=DESCRIPTION, epilog=EPILOG)
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
