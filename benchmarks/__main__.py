"""``python -m benchmarks``: every benchmark in turn, sized for a small machine.

The default run (about 3 minutes on 2 cores) is what ``nox -s bench`` does; ``--full``
takes more rounds for steadier medians. ``--only`` picks scripts, ``--json-dir`` keeps
each script's JSON, ``--url`` points the server-based scripts at a running server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from benchmarks import bench_codec, bench_memory, bench_windows, side_by_side
from benchmarks._common import machine

SCRIPTS: dict[str, Callable[[Sequence[str]], int]] = {
    "codec": bench_codec.main,
    "side": side_by_side.main,
    "memory": bench_memory.main,
    "windows": bench_windows.main,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more rounds (about 10 minutes)")
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated scripts")
    parser.add_argument("--json-dir", help="write each script's JSON here")
    parser.add_argument("--url", help="server for the server-based scripts")
    args = parser.parse_args(argv)
    rounds = ["--rounds", "7" if args.full else "3"]
    extra: dict[str, list[str]] = {
        "codec": ["--repeat", "30" if args.full else "15"],
        "side": [*rounds, "--iperf-seconds", "2" if args.full else "1"],
        "memory": [],
        "windows": rounds,
    }
    import respkv

    info = machine()
    print(
        f"respkv {respkv.__version__} from {os.path.dirname(respkv.__file__)}; "
        f"{info['cpus']} CPUs, {info['cpu_model']}; Python {info['python']}"
    )
    status = 0
    for name in args.only.split(","):
        if name not in SCRIPTS:
            parser.error(f"unknown script {name!r}; valid: {', '.join(SCRIPTS)}")
        script_args = list(extra[name])
        if args.url and name != "codec":
            script_args += ["--url", args.url]
        if args.json_dir:
            os.makedirs(args.json_dir, exist_ok=True)
            script_args += ["--json", os.path.join(args.json_dir, f"{name}.json")]
        print(f"\n=== {name} ===", flush=True)
        t0 = time.monotonic()
        status = max(status, SCRIPTS[name](script_args))
        print(f"({name}: {time.monotonic() - t0:.0f} s)", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
