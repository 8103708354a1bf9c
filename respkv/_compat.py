"""Small shims over Python-version differences, kept in one place."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:  # pragma: no cover - exercised on 3.10/3.11 only
    from typing_extensions import Buffer

__all__ = ["Buffer"]
