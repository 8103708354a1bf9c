"""``python -m respkv``: the ``respkv`` command (with no arguments: the backend in use)."""

from __future__ import annotations

import sys

from respkv.cli import main

sys.exit(main())
