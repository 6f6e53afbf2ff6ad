"""The local spool: records that could not reach the database, kept on disk until it is back.

One file per process (`spool-<pid>-<random>.jsonl`, one JSON record a line), held under an
exclusive `flock` for the process's life. A file whose lock can be taken belongs to a process
that is gone (crashed, killed): whoever takes it replays it and deletes it. Records are
idempotent (see record.py), so a replay cut short and done again writes nothing twice.

Only the writer's task calls this, and only through `asyncio.to_thread`: the file I/O stays off
the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO

from app.ledger.record import SessionRecord

logger = logging.getLogger(__name__)

SPOOL_GLOB = "spool-*.jsonl"


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self.pending = 0  # records in this process's file, not yet replayed

    def _own(self) -> IO[str]:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"spool-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            handle = path.open("a+", encoding="utf-8")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file, self._path = handle, path
        return self._file

    def append(self, records: list[SessionRecord]) -> int:
        """Write `records` to disk (fsynced); return how many did not fit under `max_bytes`."""
        handle = self._own()
        lines = [json.dumps(record.to_json(), separators=(",", ":")) + "\n" for record in records]
        handle.seek(0, os.SEEK_END)
        room = self.max_bytes - handle.tell()
        kept = 0
        for line in lines:
            if len(line) > room:
                break
            handle.write(line)
            room -= len(line)
            kept += 1
        handle.flush()
        os.fsync(handle.fileno())
        self.pending += kept
        return len(records) - kept

    def read_own(self) -> list[SessionRecord]:
        if self._file is None:
            return []
        self._file.seek(0)
        return list(_parse(self._file, self._path))

    def clear_own(self) -> None:
        """Forget this process's spooled records: they are in the database now."""
        if self._file is not None:
            self._file.truncate(0)
            self._file.flush()
            os.fsync(self._file.fileno())
        self.pending = 0

    def orphans(self) -> Generator[tuple[Path, list[SessionRecord]]]:
        """The spool files of processes that are gone, with their records, each locked while
        the caller uses it; the caller deletes a file (`remove`) once its records are written."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob(SPOOL_GLOB)):
            if path == self._path:
                continue
            try:
                handle = path.open("r", encoding="utf-8")
            except FileNotFoundError:
                continue  # replayed and removed by another process meanwhile
            with handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive and will replay it itself
                if not path.exists():
                    continue
                yield path, list(_parse(handle, path))

    def close(self) -> None:
        if self._file is not None:
            empty = self.pending == 0
            self._file.close()  # releases the lock
            if empty and self._path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._path.unlink()
            self._file = None


def _parse(handle: IO[str], path: Path | None) -> Iterator[SessionRecord]:
    for number, line in enumerate(handle, start=1):
        if not line.endswith("\n"):
            # Cut short by a crash mid-write: the record was never acknowledged as spooled.
            logger.warning("ledger spool %s: line %d is incomplete, skipped", path, number)
            continue
        try:
            yield SessionRecord.from_json(json.loads(line))
        except (ValueError, TypeError) as exc:
            logger.warning(
                "ledger spool %s: line %d is not a record (%s), skipped", path, number, exc
            )
