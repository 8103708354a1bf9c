"""The ``respkv`` command. (Initial version: prints the backend in use.)"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="respkv", description=__doc__)
    parser.parse_args(argv)
    from respkv._backend import select_backend

    try:
        info = select_backend()
    except (ValueError, ImportError) as exc:
        print(f"respkv: backend error: {exc}", file=sys.stderr)
        return 2
    print(f"backend: {info.name}")
    print(f"reason: {info.reason}")
    return 0
