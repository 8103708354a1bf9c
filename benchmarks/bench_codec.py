"""The RESP2 reply parser alone: pure ``respkv.resp2.Reader`` against ``hiredis.Reader``.

Two workloads, no sockets (the codec is sans-I/O, so it can be timed on its own):

* 10,000 ``:1\\r\\n`` replies fed at once and read back one by one: the EXISTS/DEL
  shape, where the per-reply cost of the parser is everything;
* one 4 MiB bulk reply delivered into a caller's buffer, arriving in pieces of
  ``--piece`` bytes as ``recv`` would return them. The pure reader hands out the
  caller's buffer (``get_buffer``/``buffer_updated``: what ``recv_into`` fills, so the
  copy shown here stands for the kernel's); hiredis is fed every piece, builds a
  ``bytes`` object and the adapter below copies it into the buffer.

respkv itself does not use hiredis (see ``respkv/resp2.py``): it is measured here as the
reference that decision was made against.

Each figure is the median of ``--repeat`` runs, the two readers alternating.

Run: ``python -m benchmarks.bench_codec``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

from benchmarks._common import GIB, KIB, MIB, Table, median, timed, write_json
from respkv.errors import ProtocolError, ReplyError
from respkv.resp2 import FILLED, NEED_DATA, Reader, SizeMismatch

INTEGER_REPLIES: Final = 10_000
BULK_BYTES: Final = 4 * MIB


class HiredisReader:
    """The Reader interface over ``hiredis.Reader``, as far as this benchmark uses it:
    a bulk for a target is copied into it (hiredis always builds the ``bytes``)."""

    def __init__(self) -> None:
        import hiredis

        self._reader = hiredis.Reader(
            protocolError=ProtocolError, replyError=ReplyError, notEnoughData=NEED_DATA
        )
        self._target: memoryview | None = None

    def feed(self, data: Any) -> None:
        self._reader.feed(data)

    def get_buffer(self) -> memoryview | None:
        return None

    def buffer_updated(self, nbytes: int) -> None:
        raise ValueError("buffer_updated does not match the last get_buffer")

    def set_target(self, target: memoryview | None) -> None:
        self._target = target

    def gets(self) -> Any:
        value = self._reader.gets()
        if value is NEED_DATA:
            return value
        target, self._target = self._target, None
        if target is not None and isinstance(value, bytes):
            if len(value) != target.nbytes:
                return SizeMismatch(len(value))
            target[:] = value
            return FILLED
        return value


def parse_integers(make: Callable[[], Any], data: bytes) -> int:
    reader = make()
    reader.feed(data)
    count = 0
    while reader.gets() is not NEED_DATA:
        count += 1
    return count


def parse_bulk_into(
    make: Callable[[], Any], wire: memoryview, target: memoryview, piece: int
) -> Any:
    reader = make()
    reader.set_target(target)
    pos = 0
    while True:
        value = reader.gets()
        if value is not NEED_DATA:
            return value
        n = min(piece, len(wire) - pos)
        view = reader.get_buffer()
        if view is not None:
            n = min(n, len(view))
            view[:n] = wire[pos : pos + n]
            reader.buffer_updated(n)
        else:
            reader.feed(wire[pos : pos + n])
        pos += n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per figure (default 15)")
    parser.add_argument("--piece", type=int, default=64 * KIB, help="bytes per recv (64 KiB)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    readers: dict[str, Callable[[], Any]] = {"respkv Reader (pure)": Reader}
    if importlib.util.find_spec("hiredis") is not None:
        readers["HiredisReader"] = HiredisReader
    else:
        print("(hiredis not installed: pip install hiredis)")

    integers = b":1\r\n" * INTEGER_REPLIES
    payload = os.urandom(BULK_BYTES)
    wire = memoryview(b"$%d\r\n" % BULK_BYTES + payload + b"\r\n")
    target = memoryview(bytearray(BULK_BYTES))
    int_s: dict[str, list[float]] = {name: [] for name in readers}
    bulk_s: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(args.repeat):
        for name, make in readers.items():
            seconds, count = timed(partial(parse_integers, make, integers))
            assert count == INTEGER_REPLIES, (name, count)
            int_s[name].append(seconds)
            target[:] = bytes(BULK_BYTES)
            seconds, value = timed(partial(parse_bulk_into, make, wire, target, args.piece))
            assert value is FILLED and target == payload, name
            bulk_s[name].append(seconds)

    rows = []
    for name in readers:
        rows.append(
            [
                name,
                f"{INTEGER_REPLIES / median(int_s[name]):,.0f}",
                f"{median(int_s[name]) * 1e3:.2f}",
                f"{BULK_BYTES / median(bulk_s[name]) / GIB:.2f}",
                f"{median(bulk_s[name]) * 1e3:.2f}",
            ]
        )
    print(
        f"RESP2 codec: {INTEGER_REPLIES:,} ':1' replies; one 4 MiB bulk into a caller buffer "
        f"in {args.piece // KIB} KiB pieces; median of {args.repeat}"
    )
    print(
        Table(
            ["reader", "int replies/s", "10k ints ms", "4 MiB bulk GiB/s", "bulk ms"], rows
        ).render()
    )
    write_json(
        args.json,
        {
            "benchmark": "codec",
            "piece": args.piece,
            "integers_seconds": int_s,
            "bulk_seconds": bulk_s,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
