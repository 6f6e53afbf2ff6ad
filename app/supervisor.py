"""The supervisor of `live-relay serve` with several workers: uvicorn's, minus its SIGHUP.

uvicorn's multiprocess supervisor answers SIGHUP by replacing every worker, which ends their
sessions (drained, then closed 1001). The relay promises that SIGHUP only re-reads the projects
file, so here the supervisor passes SIGHUP on to each running worker instead, where the app's
own handler reloads the file (`reload_projects_on_sighup` in app/factory.py) and every session
goes on. SIGTERM, SIGINT and the worker health checks stay uvicorn's.
"""

from __future__ import annotations

import logging
import os
import signal

from uvicorn.supervisors import Multiprocess

logger = logging.getLogger(__name__)

READY_CHECK_SECONDS = 1.0
"""How long a worker may take to answer the supervisor's "are you serving" ping."""


class ReloadingMultiprocess(Multiprocess):
    """uvicorn's `Multiprocess`; SIGHUP is forwarded to the workers instead of restarting them."""

    def handle_hup(self) -> None:
        reloaded = 0
        for worker in self.processes:
            # A worker still starting reads the file anyway, and has no SIGHUP handler yet:
            # the signal's default action would kill it.
            if worker.pid is None or not worker.is_ready(timeout=READY_CHECK_SECONDS):
                continue
            try:
                os.kill(worker.pid, signal.SIGHUP)
            except ProcessLookupError:
                continue  # it exited meanwhile; its replacement reads the file when it starts
            reloaded += 1
        logger.info(
            "SIGHUP: asked %d of %d workers to reload the projects file",
            reloaded,
            len(self.processes),
        )
