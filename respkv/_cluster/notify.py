"""The router's pollable flags: an eventfd on Linux, a non-blocking pipe elsewhere.

The same idea as the engines' notifier (the engines are being reorganised, so the
router keeps its own copy of these few lines rather than reaching into them): ``set()``
makes the descriptor readable, ``clear()`` unreadable, both coalesced with a flag so a
burst costs one ``write`` and one ``read``. A consumer clears *before* it takes the
work, a producer publishes the work *before* it sets, so no wake-up is lost.

``close()`` is safe in a forked child (it only closes descriptors), and ``set`` /
``clear`` after ``close`` do nothing.
"""

from __future__ import annotations

import os
import threading

__all__ = ["Flag"]


class Flag:
    """A file descriptor that is readable while the flag is set."""

    __slots__ = ("_closed", "_lock", "_rfd", "_set", "_wfd")

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._rfd = self._wfd = fd
        else:  # pragma: no cover - non-Linux
            self._rfd, self._wfd = os.pipe()
            os.set_blocking(self._rfd, False)
            os.set_blocking(self._wfd, False)
        self._set = False
        self._closed = False
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self._rfd

    def set(self) -> None:
        with self._lock:
            if self._set or self._closed:
                return
            self._set = True
            os.write(self._wfd, (1).to_bytes(8, "little"))

    def clear(self) -> None:
        with self._lock:
            if not self._set or self._closed:
                return
            self._set = False
            try:
                os.read(self._rfd, 8)
            except BlockingIOError:
                pass

    def close(self) -> None:
        # No lock: in a forked child the lock may have been copied while held.
        if self._closed:
            return
        self._closed = True
        os.close(self._rfd)
        if self._wfd != self._rfd:
            os.close(self._wfd)
