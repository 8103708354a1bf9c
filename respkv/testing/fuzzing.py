"""The native reader as the fuzz harnesses drive it: ``respkv_native._core.parse_replies``
with the reader limits the engines pass (``respkv.resp2``'s), shared by the hypothesis
properties (tests/test_fuzz_parsers.py) and the atheris harness (tests/test_fuzz_atheris.py)."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Final

import respkv.resp2 as resp2_limits

__all__ = ["LIMITS", "native_parse"]

#: The reader limits, passed to the C++ reader as the engines pass them (resp2's).
LIMITS: Final = {
    "max_bulk_bytes": resp2_limits.MAX_BULK_BYTES,
    "max_multibulk_len": resp2_limits.MAX_MULTIBULK_LEN,
    "max_depth": resp2_limits.MAX_DEPTH,
    "max_line_bytes": resp2_limits.MAX_LINE_BYTES,
}


def native_parse(core: ModuleType, chunks: list[bytes], target: int | None) -> list[Any]:
    """``parse_replies`` over ``chunks`` with the engines' limits."""
    return list(core.parse_replies(chunks, target, limits=LIMITS))
