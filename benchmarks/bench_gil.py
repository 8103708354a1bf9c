"""How far the pure engine's SETs are from what bare Python threads do, and what another
threading model would give.

The pure engine runs one thread per connection; for each large SET a worker sends, waits
in ``epoll`` (its socket and its wake-up descriptor) and reads the reply: three calls
that each release and retake the GIL. This script measures one SET overwrite batch,
alternating round by round on one throwaway server, done these ways:

* ``respkv native`` and ``respkv python``: the real clients, ``--workers`` connections;
* ``threads``: a bare prototype, one Python thread per connection, a blocking socket,
  ``sendmsg`` then ``recv``: two calls per value (and no wake-up descriptor, so it
  could not answer a cancel or a deadline while it waits);
* ``threads, epoll first``: the same, waiting in ``epoll`` on the socket and an
  eventfd before each read, as an engine's worker must: the pure engine's three calls
  without its bookkeeping;
* ``mux xT``: ``T`` Python threads, each driving its share of the same connections on
  one ``selectors`` loop (non-blocking sockets, one request in flight per connection),
  so only ``T`` threads ever want the GIL.

The prototypes are deliberately minimal (no deadlines, no failure handling: any reply
but ``+OK`` stops the run); they bound what a change of model could gain, and they are
not a client. Connections are made before the clock starts. Rates are GB/s (GB = 1e9
bytes), ratios divide by ``respkv native`` in the same run.

Run: ``python -m benchmarks.bench_gil [--sizes 0.5,1] [--workers 4] [--mux 1,2]``.
"""

from __future__ import annotations

import argparse
import os
import select
import selectors
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Final

from benchmarks._common import (
    MIB,
    Table,
    add_server_flags,
    make_values,
    median,
    open_respkv,
    rotated,
    server_from_args,
    timed,
    write_json,
)
from respkv._options import ConnectionOptions
from respkv.client import Client

OK: Final = b"+OK\r\n"
BATCH_MIB: Final = 256
#: A bound on every prototype wait: a server that stops answering ends the run.
WAIT_S: Final = 30.0


def set_request(key: bytes, size: int) -> bytes:
    """The RESP2 bytes of ``SET key <value>`` up to the value (the value and CRLF follow)."""
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (len(key), key, size)


def connect(options: ConnectionOptions, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection((options.host, options.port), timeout=WAIT_S)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Blocking with no Python timeout (which would add a poll before every call);
        # the kernel bounds each wait instead.
        s.settimeout(None)
        bound = struct.pack("ll", int(WAIT_S), 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bound)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, bound)
        socks.append(s)
    return socks


class Work:
    """The batch's keys, handed out one at a time to whichever thread asks."""

    def __init__(self, keys: Sequence[bytes], values: Sequence[bytearray]) -> None:
        self._items: Iterator[tuple[bytes, bytearray]] = iter(zip(keys, values, strict=True))
        self._lock = threading.Lock()

    def next(self) -> tuple[bytes, bytearray] | None:
        with self._lock:
            return next(self._items, None)


def check_reply(got: bytes) -> None:
    if got != OK:
        raise SystemExit(f"prototype: the server answered {got[:80]!r}, not +OK")


def blocking_thread(sock: socket.socket, work: Work, wait_first: bool = False) -> None:
    """One connection, one thread: send a SET whole, read its +OK, repeat.
    ``wait_first``: wait for the reply in ``epoll`` (watching a wake-up descriptor too,
    as an engine's worker must) before reading it: one more GIL hand-off per value."""
    sock.setblocking(True)
    poller = select.epoll()
    wake = os.eventfd(0) if wait_first else -1
    if wait_first:
        poller.register(sock.fileno(), select.EPOLLIN)
        poller.register(wake, select.EPOLLIN)
    while (item := work.next()) is not None:
        key, value = item
        parts: list[bytes | bytearray] = [set_request(key, len(value)), value, b"\r\n"]
        sent = sock.sendmsg(parts)  # blocking: normally all of it
        if sent < sum(len(p) for p in parts):
            sock.sendall(memoryview(b"".join(parts))[sent:])
        if wait_first and not poller.poll(WAIT_S):
            raise SystemExit(f"prototype: no reply within {WAIT_S:g} s")
        check_reply(sock.recv(64))
    poller.close()
    if wake >= 0:
        os.close(wake)


class Lane:
    """One non-blocking connection of a multiplexing thread: what it still has to send."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out: list[memoryview] = []

    def start(self, work: Work) -> bool:
        item = work.next()
        if item is None:
            return False
        key, value = item
        self.out = [
            memoryview(set_request(key, len(value))),
            memoryview(value),
            memoryview(b"\r\n"),
        ]
        return True

    def pump(self) -> bool:
        """Send what the socket takes; True once the request is all written."""
        while self.out:
            try:
                sent = self.sock.sendmsg(self.out)
            except BlockingIOError:
                return False
            while sent:
                head = self.out[0]
                if sent >= head.nbytes:
                    sent -= head.nbytes
                    self.out.pop(0)
                else:
                    self.out[0] = head[sent:]
                    sent = 0
        return True


def mux_thread(socks: Sequence[socket.socket], work: Work) -> None:
    """Several connections, one thread, one ``selectors`` loop."""
    sel = selectors.DefaultSelector()
    live = 0
    for sock in socks:
        sock.setblocking(False)
        lane = Lane(sock)
        if lane.start(work):
            live += 1
            events = selectors.EVENT_READ if lane.pump() else selectors.EVENT_WRITE
            sel.register(sock, events, lane)
    while live:
        ready = sel.select(WAIT_S)
        if not ready:
            raise SystemExit(f"prototype: no reply within {WAIT_S:g} s")
        for key, events in ready:
            lane = key.data
            if events & selectors.EVENT_WRITE:
                if lane.pump():
                    sel.modify(lane.sock, selectors.EVENT_READ, lane)
                continue
            check_reply(lane.sock.recv(64))
            if lane.start(work):
                wanted = selectors.EVENT_READ if lane.pump() else selectors.EVENT_WRITE
                sel.modify(lane.sock, wanted, lane)
            else:
                sel.unregister(lane.sock)
                live -= 1
    sel.close()


def run_threads(targets: Sequence[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 4)
        if t.is_alive():
            raise SystemExit("prototype: a thread did not finish")


def prototype(
    options: ConnectionOptions,
    workers: int,
    mux: int | None,
    opened: list[socket.socket],
    *,
    wait_first: bool = False,
) -> Callable[[Sequence[bytes], Sequence[bytearray]], None]:
    """A batch SET by a prototype: ``mux=None`` one blocking thread per connection
    (``wait_first``: see :func:`blocking_thread`), else ``mux`` threads sharing the
    connections. Connections are made here, untimed, and added to ``opened`` (the
    caller closes them)."""
    socks = connect(options, workers)

    def run(keys: Sequence[bytes], values: Sequence[bytearray]) -> None:
        work = Work(keys, values)
        if mux is None:
            run_threads([partial(blocking_thread, s, work, wait_first) for s in socks])
        else:
            run_threads([partial(mux_thread, socks[i::mux], work) for i in range(mux)])

    opened.extend(socks)
    return run


Runner = Callable[[Sequence[bytes], Sequence[bytearray]], None]


def measure(
    options: ConnectionOptions, size: int, workers: int, muxes: Sequence[int], rounds: int
) -> dict[str, list[float]]:
    """GB/s per round of every contender, alternating, for values of ``size`` bytes."""
    count = max(1, BATCH_MIB * MIB // size)
    keys = [f"gil:{i}".encode() for i in range(count)]
    values = make_values(count, size)
    clients = {b: open_respkv(options, b, num_workers=workers) for b in ("native", "python")}
    opened: list[socket.socket] = []
    try:
        runners: dict[str, Runner] = {
            f"respkv {b}": partial(client_set, c) for b, c in clients.items()
        }
        runners["threads"] = prototype(options, workers, None, opened)
        runners["threads, epoll first"] = prototype(options, workers, None, opened, wait_first=True)
        for m in muxes:
            runners[f"mux x{m}"] = prototype(options, workers, m, opened)
        for run in runners.values():  # warm-up: the keys exist, so SETs overwrite
            run(keys, values)
        rates: dict[str, list[float]] = {name: [] for name in runners}
        for r in range(rounds):
            for name in rotated(list(runners), r):
                wall, _ = timed(partial(runners[name], keys, values))
                rates[name].append(count * size / wall / 1e9)
        return rates
    finally:
        for c in clients.values():
            c.close()
        for sock in opened:
            sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_flags(parser)
    parser.add_argument("--sizes", default="0.5,1", help="value MiB, comma-separated")
    parser.add_argument("--workers", type=int, default=4, help="connections")
    parser.add_argument("--mux", default="1,2", help="thread counts of the mux prototype")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    muxes = [int(m) for m in args.mux.split(",") if m]
    results: list[dict[str, object]] = []
    with server_from_args(args) as options:
        for mib in (float(s) for s in args.sizes.split(",")):
            size = round(mib * MIB)
            rates = measure(options, size, args.workers, muxes, args.rounds)
            base = median(rates["respkv native"])
            rows = []
            for name, got in rates.items():
                mid = median(got)
                spread = (max(got) - min(got)) / mid * 50
                rows.append([name, f"{mid:.2f} ±{spread:.0f}%", f"{mid / base:.2f}x"])
                results.append({"chunk_bytes": size, "contender": name, "rates": got})
            print(
                f"\nSET overwrite, {mib:g} MiB values, {args.workers} connections, "
                f"{args.rounds} rounds: GB/s, median ±half the spread (x respkv native)"
            )
            print(Table(["", "GB/s", "x native"], rows).render())
    write_json(args.json, {"benchmark": "bench_gil", "workers": args.workers, "results": results})
    return 0


def client_set(client: Client, keys: Sequence[bytes], values: Sequence[bytearray]) -> None:
    if not client.batch_set([k.decode() for k in keys], list(values)).ok:
        raise SystemExit("respkv: the SET batch failed")


if __name__ == "__main__":
    sys.exit(main())
