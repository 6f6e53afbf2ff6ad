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

The young generation is also collected less often: every 10,000 net allocations of tracked
objects instead of CPython's 700. A session's set-up allocates a few hundred objects that live
for milliseconds (handshake headers, ASGI messages, coroutine frames); at 700 many were still
alive at a young collection, got promoted and were walked again by the older generations'
passes. Measured over two storms of 500 sessions, the collector's CPU fell from about 470 ms to
220 ms (docs/performance-storms.md). The pauses are fewer, not all shorter: a young pass
takes ~3 ms instead of 0.15, a middle one (every ten young) ~50 ms where a storm's full
collections took 40-180 ms; at most 10,000 young objects (a few MB) wait for a pass.
"""

from __future__ import annotations

import gc

# Net allocations of tracked objects between two collections of the young generation
# (CPython's default: 700); the older generations keep their defaults.
YOUNG_GENERATION_THRESHOLD = 10_000


def freeze_startup_heap() -> int:
    """Collect what start-up left behind, then move every surviving object out of the
    collector's reach, and collect the young generation less often from now on; returns how
    many objects were frozen. Call once the process is ready."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)
    return gc.get_freeze_count()
