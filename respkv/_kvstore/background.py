"""The KV store's background eviction thread, and the finalizer of a store dropped
without ``close()``.

Part of :mod:`respkv.kvstore`. The thread holds the store only weakly (a strong
reference for the length of one wake-up), so a store nobody else refers to is garbage
collected; its ``weakref.finalize`` (:func:`release_unclosed`) then stops the thread,
closes a client the store owns and warns (``ResourceWarning``), as an unclosed socket
does. The thread calls the store's ``_background_round`` (which reconciles unsettled
keys and runs eviction cycles) and knows nothing else about it.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from typing import Final, Protocol

from respkv.client import Client

__all__ = ["CLOSE_JOIN_TIMEOUT", "background", "release_unclosed"]

#: Seconds ``close`` waits for the background thread (it finishes its current UNLINK).
CLOSE_JOIN_TIMEOUT: Final = 30.0


class _Store(Protocol):
    def _background_round(self) -> bool: ...


def background(
    ref: weakref.ref[_Store], stop: threading.Event, wake: threading.Event, interval: float
) -> None:
    """The background eviction thread. It holds the store only for one round at a time,
    so a store nobody else refers to is collected (and its finalizer stops this loop)."""
    while not stop.is_set():
        wake.wait(interval)
        wake.clear()
        if stop.is_set():
            return
        store = ref()
        if store is None:
            return
        try:
            if not store._background_round():
                return
        finally:
            del store  # if this was the last reference, the finalizer runs here


def release_unclosed(
    stop: threading.Event,
    wake: threading.Event,
    thread: threading.Thread | None,
    client: Client | None,
    label: str,
) -> None:
    """The finalizer of a store collected without ``close()``: stop its thread, close the
    client it owns, and warn when it held either."""
    stop.set()
    wake.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join(CLOSE_JOIN_TIMEOUT)
    if client is not None:
        client.close()
    if thread is not None or client is not None:
        warnings.warn(
            f"unclosed {label}: call close() or use it as a context manager",
            ResourceWarning,
            stacklevel=2,
        )
