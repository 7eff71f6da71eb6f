"""The garbage collector's settings while the process serves requests or sends reminders."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_users = 0  # apps, scheduler loops and ticks of this process inside quiet_collector()
_thresholds = gc.get_threshold()


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Keep the garbage collector from pausing the event loop while the block runs.

    What was alive when the first user came in (modules, routes, the exercise library, the
    caches) lives as long as it: frozen, the collector stops walking it. A full collection
    over it paused every request in flight for 40-90 ms on the 2-core machine, every few
    seconds under load (the p99). Requests and reminders allocate hundreds of objects each
    that reference counting frees at once, so young collections every 700 allocations found
    next to nothing: every 20,000 they cost a tenth less CPU per request, and a tick of
    10,000 reminders spent 0.3-0.5 s in 500 collections against 50 ms in 9 (bench/README.md).

    The settings are the process's, counted across users: the first one in sets them and
    freezes, the last one out restores the thresholds and unfreezes. A tick inside a serving
    app or a worker's loop changes nothing, so nothing made since start-up (cyclic garbage
    not yet collected included) is frozen for the process's life; and a process that makes
    many apps or runs single ticks (the tests, `homework send-reminders`) gets its defaults
    back and leaks nothing.
    """
    global _users, _thresholds
    if not _users:
        _thresholds = gc.get_threshold()
        gc.set_threshold(20_000, 20, 10)
        gc.freeze()
    _users += 1
    try:
        yield
    finally:
        _users -= 1
        if not _users:
            gc.set_threshold(*_thresholds)
            gc.unfreeze()
