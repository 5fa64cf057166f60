"""Garbage-collector settings for a kubesim process that holds a large store.

Why: the store's objects are many small dicts and lists, all alive for as long as their Kubernetes object
lives. CPython's cyclic collector scans every live container at each full collection, and it runs a full
collection whenever the heap has grown by a quarter, so while kubesim fills up (10,000 jobs are millions
of containers) most of its CPU went into re-scanning the same live objects, in pauses of a second or more.
Stored objects are trees (copy-on-write, never cyclic), so reference counting alone frees them.

Contract: `keep_survivors_out_of_collections()` freezes (`gc.freeze`) what is alive now and, after every
full collection from then on, what survived it: later collections scan only objects younger than the last
full one. Full collections still run (as the heap grows by a quarter) and still reclaim every reference
cycle that is garbage when they run; a cycle among survivors that becomes garbage later (a connection
that was open during a full collection and closes afterwards) is not reclaimed, which costs a few
kilobytes per such connection and full collection. Idempotent. For the standalone server
(`python -m kubesim`); a test process, which makes cyclic garbage all the time, should not call it.
"""

from __future__ import annotations

import gc
from typing import Any


def keep_survivors_out_of_collections() -> None:
    """Freeze what is alive now and what survives each later full collection."""
    gc.freeze()
    if _freeze_after_full_collection not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full_collection)


def _freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
    # Right after a full collection everything unreachable is gone, so only live objects are frozen.
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


__all__ = ["keep_survivors_out_of_collections"]
