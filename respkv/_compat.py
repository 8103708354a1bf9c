"""Small shims over Python-version differences, kept in one place."""

from __future__ import annotations

import sys
from typing import Any

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:  # pragma: no cover - exercised on 3.10/3.11 only
    from typing_extensions import Buffer

#: What the batch APIs accept as a value buffer: any object exporting the buffer
#: protocol (bytes, bytearray, memoryview, numpy arrays, ``tensor.numpy()``). Typed as
#: ``Any`` on purpose: numpy declares ``__buffer__`` only for Python >= 3.12, so a
#: precise ``Buffer`` would reject numpy arrays in user code type-checked for 3.10/3.11.
#: The check is made at submit time instead (``respkv._validate.check_buffers``).
BufferLike = Any

__all__ = ["Buffer", "BufferLike"]
