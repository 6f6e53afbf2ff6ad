"""Keep the cyclic garbage collector's full passes off the heap the relay starts with.

A started relay holds about 90,000 tracked objects (FastAPI, pydantic, google-auth, redis-py,
the app itself) that live as long as the process. Every full collection walks all of them, and
a connection storm allocates fast enough to trigger full collections: measured on the benchmark
machine, a storm of 300 sessions met 2-3 of them stalling the event loop 300-490 ms each, which
every streaming session and every handshake in flight waited through. Frozen (`gc.freeze`),
the start-up objects are never walked again; the same storms then paused the loop at most
60 ms, and the storm completed 2-3 times sooner (docs/performance-storms.md). Reference
counting still frees frozen objects; only cycles among them are never collected, and the
start-up heap is not garbage.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what start-up left behind, then move every surviving object out of the
    collector's reach; returns how many objects were frozen. Call once the process is ready."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
