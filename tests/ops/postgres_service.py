"""What the compose file's `postgres` image does, carried out with the host's PostgreSQL: a
cluster whose superuser, password and database come from POSTGRES_USER, POSTGRES_PASSWORD and
POSTGRES_DB, served on 127.0.0.1:5432 (inside the compose stack's private network namespace,
see compose_stack.py) with password authentication over TCP, as the image does.

    python -m tests.ops.postgres_service

PostgreSQL refuses to run as root: as root this runs it as the `postgres` user, in a data
directory under /tmp that it owns (the stack's work directory is not readable by that user).
It exits with the server, and stops the server on SIGTERM.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PORT = 5432


def server_binaries_present() -> bool:
    return all(shutil.which(tool) for tool in ("initdb", "postgres", "pg_isready", "createdb"))


def main() -> int:
    user = os.environ["POSTGRES_USER"]
    password = os.environ["POSTGRES_PASSWORD"]
    database = os.environ["POSTGRES_DB"]
    root = Path(tempfile.mkdtemp(prefix="live-relay-compose-postgres-"))
    become: Callable[[], None] | None = None
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)

        def become_postgres() -> None:
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

        become = become_postgres
    data, password_file = root / "data", root / "password"
    password_file.write_text(password + "\n")
    if become is not None:
        os.chown(password_file, account.pw_uid, account.pw_gid)
    try:
        subprocess.run(
            [
                "initdb", "-D", str(data), "-U", user, f"--pwfile={password_file}",
                "--auth-local=trust", "--auth-host=scram-sha-256",
            ],
            preexec_fn=become, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        server = subprocess.Popen(
            [
                "postgres", "-D", str(data), "-p", str(PORT),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
            ],
            preexec_fn=become,
        )  # fmt: skip
        signal.signal(signal.SIGTERM, lambda *_: server.terminate())
        deadline = time.monotonic() + 30
        probe = ["pg_isready", "-h", "127.0.0.1", "-p", str(PORT), "-U", user]
        while subprocess.run(probe, capture_output=True, check=False).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                return 1
            time.sleep(0.2)
        env = os.environ | {"PGPASSWORD": password}
        subprocess.run(
            ["createdb", "-h", "127.0.0.1", "-p", str(PORT), "-U", user, database],
            env=env, check=True,
        )  # fmt: skip
        return server.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
