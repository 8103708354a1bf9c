"""The pure-Python backend: the readable reference implementation of the contract.

``engine`` owns batches, tiling and completions; ``worker`` owns one connection each
(selectors loop, pipelining windows, zero-copy I/O); ``notify`` the pollable event fd.
"""

from __future__ import annotations

from respkv._pyengine.engine import PyConnector

__all__ = ["PyConnector"]
