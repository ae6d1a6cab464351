"""When CPython's cyclic garbage collector runs in a command that answers at once.

A command that imports pandas and scipy holds ~70,000 tracked objects. The collector's
passes over them are pure cost here: nothing a report builds forms reference cycles, and
everything is freed by reference counting or at exit. bench/cli_latency.py measured both
pauses below (Python 3.11, 2 cores).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while importing pandas and scipy or building many
    small acyclic containers.

    The imports trigger ~180 collections (0.05 s of 0.55 s); tens of thousands of new lists
    trigger collections that scan every tracked object of a 100,000-run frame, which took
    longer than building the lists (bench/report.py).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def skip_collection_at_exit() -> None:
    """Freeze every object as the interpreter exits, before its last full collection.

    That collection walked every object still alive: 0.1-0.2 s of `jepardy report`'s 1 s.
    atexit handlers run before it, so freezing there skips it. Objects are still freed by
    reference counting; files and connections are closed by the `with` blocks that opened
    them, never by the collector.
    """
    atexit.register(gc.freeze)
