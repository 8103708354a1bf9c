"""Zero copy, shown: peak RSS growth during a 400 MB batch GET into preallocated buffers.

Measured in a fresh subprocess (``ru_maxrss`` is a process-wide peak), after the buffers
were allocated and touched, so only what the GET itself allocates can raise the peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from respkv import ConnectionOptions

LIMIT_MIB = 32

SCRIPT = r"""
import json, resource, sys
import numpy as np
import respkv
host, port, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n, size = 100, 4 * 1024 * 1024
src = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8)
keys = [f"mem:{i}" for i in range(n)]
with respkv.connect(f"resp://{host}:{port}", backend=backend, num_workers=4) as c:
    assert c.batch_set(keys, [src] * n).ok
    out = [np.ones(size, dtype=np.uint8) for _ in range(n)]  # touched: resident
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = c.batch_get(keys, out)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ok = r.ok and all(np.array_equal(o, src) for o in out[:: 10])
    c.batch_delete(keys)
print(json.dumps({"ok": ok, "growth_kib": after - before}))
"""


def test_get_400mb_rss_growth(
    redis_options: ConnectionOptions, backend_name: str, tmp_path: Path
) -> None:
    # cwd outside the checkout: the child imports respkv as installed, like the tests.
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, redis_options.host, str(redis_options.port), backend_name],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"]
    assert result["growth_kib"] < LIMIT_MIB * 1024, result
