"""An address that cannot be listened on, said in one line with the fix, instead of uvicorn's
error and exit.

uvicorn logs `[Errno 98] Address already in use` (or `[Errno 99] Cannot assign requested
address`) and exits 3, its status for any start-up failure. `live-relay serve` and `dev` ask
first, by binding the address the way uvicorn will (SO_REUSEADDR, so a port in TIME_WAIT counts
as free, as it does for uvicorn), name what holds a taken port when Linux's /proc tells
cheaply, and exit with a status of each kind's own (`app.exit_status`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from pathlib import Path

from app.exit_status import ExitStatus

# The exit status for "port taken", so `make run` can leave the one line alone (see Makefile).
PORT_TAKEN_EXIT_STATUS = ExitStatus.PORT_TAKEN
TCP_LISTEN = "0A"  # the `st` column of /proc/net/tcp for a listening socket
NEARBY_PORTS = 20


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def is_taken(host: str, port: int) -> bool:
    """Whether binding (host, port) fails because something else listens there."""
    if port == 0:
        return False
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def free_port_near(host: str, port: int) -> int | None:
    """The first port above `port` that is free now, to suggest (not to reserve)."""
    for candidate in range(port + 1, min(port + NEARBY_PORTS, 65535) + 1):
        with contextlib.suppress(OSError):
            if not is_taken(host, candidate):
                return candidate
    return None


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == TCP_LISTEN:
                    inodes.add(fields[9])
    return inodes


def holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """`name (pid N)` of a process listening on `port`, if /proc shows one we may look at."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for process in proc.iterdir():
        if not process.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for descriptor in (process / "fd").iterdir():
                if os.readlink(descriptor) in wanted:
                    name = (process / "comm").read_text().strip()
                    return f"{name} (pid {process.name})"
    return None


def taken_message(host: str, port: int, *, option: str) -> str:
    """One line: which port, who holds it when known, and the option that picks another.

    `option` is how this command takes a port, with `{port}` for the suggested number
    (e.g. `--port {port}`).
    """
    held_by = holder(port)
    by = f" by {held_by}" if held_by else ""
    suggestion = free_port_near(host, port)
    pick = option.format(port=suggestion if suggestion else 0)
    return (
        f"port {port} on {host} is already in use{by}: stop it, or pick another port with {pick}"
        + ("" if suggestion else " (0: any free port)")
    )


def bind_error(host: str, port: int) -> OSError | None:
    """Why binding (host, port) fails now, if it does (port 0: whether the host can be bound)."""
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return exc
    return None


def cannot_listen_message(host: str, port: int, error: OSError) -> str:
    why = error.strerror or str(error)
    if error.errno == errno.EACCES and 0 < port < 1024:
        return (
            f"cannot listen on port {port}: {why} -- fix: pick a port above 1023, e.g. --port 8080"
        )
    return (
        f"cannot listen on {host}:{port}: {why} -- fix: use an address of this machine, "
        "--host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every interface)"
    )


def said_cannot_listen(host: str, port: int, *, option: str) -> ExitStatus | None:
    """When (host, port) cannot be listened on, say why in one line on stderr and return the
    exit status of that kind: `PORT_TAKEN` or `CANNOT_LISTEN`. `option` as for `taken_message`."""
    error = bind_error(host, port)
    if error is None:
        return None
    if error.errno == errno.EADDRINUSE:
        print(f"live-relay: {taken_message(host, port, option=option)}", file=sys.stderr)
        return ExitStatus.PORT_TAKEN
    print(f"live-relay: {cannot_listen_message(host, port, error)}", file=sys.stderr)
    return ExitStatus.CANNOT_LISTEN
