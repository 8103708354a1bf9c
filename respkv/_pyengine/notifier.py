"""A pollable wake-up flag: an eventfd on Linux, a non-blocking pipe elsewhere.

``set()`` makes the descriptor readable; ``clear()`` makes it unreadable again. Both
are coalesced with a plain flag so a burst of completions costs one ``write`` and
one ``read``. The order that avoids lost wake-ups: a consumer calls ``clear()``
*before* it takes the work, a producer publishes the work *before* ``set()``.

``close()`` releases the descriptor(s); afterwards ``fileno()`` is -1 (``poll`` ignores
a negative descriptor) and ``set``/``clear`` do nothing. ``close_in_child()`` is the
same without the lock, for a process forked while another thread may have held it.
"""

from __future__ import annotations

import os
import threading
from typing import Final

__all__ = ["Notifier"]

#: What one ``write`` adds to an eventfd counter (a pipe just gets 8 bytes).
_ONE: Final = (1).to_bytes(8, "little")


class Notifier:
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
        return -1 if self._closed else self._rfd

    def set(self) -> None:
        with self._lock:
            if self._set or self._closed:
                return
            self._set = True
            os.write(self._wfd, _ONE)

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
        with self._lock:
            self._close_fds()

    def close_in_child(self) -> None:
        """``close()`` for a forked child: the lock may be held by a thread that does
        not exist there, so it is not taken (the child has no other thread)."""
        self._close_fds()

    def _close_fds(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in {self._rfd, self._wfd}:
            try:
                os.close(fd)
            except OSError:
                pass
