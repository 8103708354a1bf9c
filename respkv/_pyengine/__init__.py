"""The pure-Python backend: the readable reference implementation of the contract.

The files mirror the native engine's (``respkv_native/src``), one concern each, and
depend one way (``engine`` -> ``worker`` -> ``connection``, ``requests``, ``replies`` ->
``batch``, ``notifier``; nothing imports ``engine`` back; shared sizes and limits come
from :mod:`respkv._limits`, never from the native engine or back from here):

* ``engine``: submit, the tiling hand-off, cancel, the completion queue, close and fork;
* ``worker``: one thread's scheduling (pipelining windows, deadlines, reconnect backoff);
* ``connection``: one socket (non-blocking connect, TLS, handshake, send/recv, reader);
* ``requests``: the bytes of a run's commands (values referenced, not copied);
* ``replies``: what a run's replies mean (statuses, failure records): the hot loops;
* ``batch``: the Batch and Tile records and how a finished tile completes its batch;
* ``notifier``: the pollable event fd.
"""

from __future__ import annotations

from respkv._pyengine.engine import PyConnector

__all__ = ["PyConnector"]
