"""``python -m respkv.conformance SPEC [pytest arguments]``: see :mod:`respkv.conformance._run`."""

from __future__ import annotations

import sys

from respkv.conformance._run import main

sys.exit(main())
