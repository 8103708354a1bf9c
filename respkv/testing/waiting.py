"""Waiting for one batch of a connector: the suite's :func:`wait_for`.

It waits on the connector's event fd with ``poll`` (no polling loop with sleeps; unlike
``select``, ``poll`` takes descriptors above 1023) and keeps the completions of *other*
batches it drains for their own ``wait_for`` call.
"""

from __future__ import annotations

import select
import threading
import time
import weakref
from typing import Any

from respkv._contract import Connector

__all__ = ["wait_for"]

# Completions drained by wait_for() for other batches than the one awaited, kept for their
# own wait_for() call: per connector *object* (weakly, so a collected connector's leftovers
# go with it, and a new connector that reuses its id() starts clean). A connector that
# cannot be weakly referenced is pinned instead (kept alive, so its id is never reused).
_unclaimed: weakref.WeakKeyDictionary[object, dict[int, Any]] = weakref.WeakKeyDictionary()
_unclaimed_pinned: dict[int, tuple[object, dict[int, Any]]] = {}
_unclaimed_lock = threading.Lock()


def _unclaimed_of(connector: object) -> dict[int, Any]:
    with _unclaimed_lock:
        try:
            return _unclaimed.setdefault(connector, {})
        except TypeError:  # no weak reference (``__slots__``) or unhashable
            return _unclaimed_pinned.setdefault(id(connector), (connector, {}))[1]


def wait_for(connector: Connector, batch_id: int, timeout: float = 60.0) -> Any:
    """Block until ``batch_id`` completes on ``connector`` and return its Completion;
    ``TimeoutError`` after ``timeout`` seconds. Completions of other batches drained
    meanwhile are kept for their own ``wait_for`` call on the same connector object."""
    store = _unclaimed_of(connector)
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(connector.event_fd(), select.POLLIN)
    while True:
        with _unclaimed_lock:
            if batch_id in store:
                return store.pop(batch_id)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"batch {batch_id} did not complete within {timeout} s")
        poller.poll(remaining * 1000.0)
        done = connector.drain_completions()
        with _unclaimed_lock:
            for c in done:
                assert c.batch_id not in store, f"batch {c.batch_id} completed twice"
                store[c.batch_id] = c
