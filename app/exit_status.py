"""The exit statuses of `live-relay serve` and `dev`: one per kind of start-up failure.

A script, a supervisor or `make run` can tell them apart without reading the message, which is
one line per problem on stderr, naming the setting or file and the fix. `make run` treats only
`PORT_TAKEN` as done (it has said what to do); every other status passes through.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    FAILED = 1
    """An unexpected error: a bug, with its traceback (Python's own status for one)."""
    SETTINGS = 2
    """A RELAY_* setting or a command-line option has a value that cannot work (argparse's
    status for a bad option, too)."""
    # 3 is uvicorn's "start-up failure", whatever the cause: live-relay never exits with it.
    FILE = 4
    """A file a setting names cannot be used: TLS certificate or key, projects file, CA file,
    credentials file."""
    GOOGLE_CREDENTIALS = 5
    """RELAY_UPSTREAM=vertex and no Google credentials (or no project) were found."""
    NO_CLIENT_CREDENTIALS = 6
    """No API key and no projects file: no client could ever connect."""
    CANNOT_LISTEN = 7
    """The address cannot be listened on (not on this machine, or not allowed)."""
    PORT_TAKEN = 8
    """Something else listens on the port."""
    STARTUP_FAILED = 9
    """The relay failed while starting, after its checks passed (its log says why)."""
