"""Soak: mixed load under random network faults, then nothing left behind.

For ``RESPKV_SOAK_SECONDS`` (default 5 per backend in the default run; ``nox -s soak``
sets 30, so a minute over both), 16 threads share one :class:`~respkv.Client` and an
asyncio loop runs 4 tasks on one :class:`~respkv.aio.AsyncClient`, all doing SET, GET,
EXISTS and DEL of 1-4 keys with values of 1 KiB to 8 MiB, through a
:class:`~respkv.testing.faultproxy.FaultProxy` that keeps breaking things: resets, cuts in
either direction (RST or FIN) at random offsets, stalls of either direction (some past
``op_timeout``), short trickles, short refusals. Only faults that cannot make a wrong
value undetectable are used (RESP has no checksum: a corrupted payload byte or an
injected reply while requests are in flight would be indistinguishable from the truth).

What must hold, checked on every result:

* a GET reported OK holds exactly its key's value (values encode their key and size;
  buffers are poisoned first); a GET with a buffer of the wrong size is never OK;
* each key is owned by one worker, which tracks what the server must hold: ``present``
  after an OK SET, ``absent`` after an answered DEL, ``unknown`` after a write whose
  outcome is unknown (:attr:`~respkv.Failure.outcome_unknown`). An answer that
  contradicts a known state (a MISS for a present key, a hit for an absent one) fails;
* every failed key carries a Failure record whose kind gives its status.

And the process and server are where they were once the clients are closed
(:data:`BOUNDS`): descriptors, threads and server connections exactly, RSS within a
bound; RSS in the second half of the run does not grow past a bound either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import random
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import pytest

import respkv
import respkv.aio
from respkv import BatchResult, ConnectionOptions, Failure, KeyStatus
from respkv._admin import AdminConnection
from respkv._backend import load_native
from respkv._contract import STATUS_OF_KIND
from respkv.testing.faultcheck import keyed_value, poisoned
from respkv.testing.faultproxy import FaultProxy
from respkv.testing.servers import LocalServer

SECONDS: Final = float(os.environ.get("RESPKV_SOAK_SECONDS", "5"))
THREADS: Final = 16
ASYNC_TASKS: Final = 4
KEYS_PER_WORKER: Final = 3
#: Value sizes, 1 KiB to 8 MiB; a worker's keys take them in turn.
SIZES: Final = (1 << 10, 4 << 10, 64 << 10, 256 << 10, 1 << 20, 2 << 20, 8 << 20)
#: Pause between faults, seconds (uniform).
FAULT_EVERY: Final = (0.1, 0.5)
OP_TIMEOUT: Final = 1.0
#: Share of GETs given a deadline (sync ``timeout=``) or cancelled (asyncio) early, and
#: how early, in seconds: some end before their values arrive.
ABANDON: Final = 0.1
ABANDON_AFTER: Final = (0.001, 0.05)
#: RSS sampling period during the load, seconds.
RSS_EVERY: Final = 0.25
#: How long after an unknown outcome is reported the write may still be applied: the
#: server may not have read all of the dropped connection's bytes yet (an 8 MiB SET it
#: was reading in pieces while serving 20 other workers). Measured: under 1 s here.
SETTLE: Final = 3.0
#: Operations remembered per key for failure messages.
HISTORY: Final = 12
MIB: Final = 1 << 20


@dataclass(frozen=True)
class Bounds:
    """What the process may keep after the soak, compared with before it."""

    #: Descriptors, threads, server connections: none may be left behind.
    fds: int = 0
    threads: int = 0
    server_connections: int = 0
    #: RSS after close - RSS before the load (both after malloc_trim). Measured: 48-81
    #: MiB pure, the same after 5 s and 30 s (malloc arenas of 20 threads keeping freed
    #: buffers, not a leak), at most 13 MiB native. The load moves thousands of buffers
    #: of up to 8 MiB: leaking a small share of them would be gigabytes.
    rss_after_bytes: int = 128 * MIB
    #: RSS over the last quarter of the load - over its second quarter (medians of
    #: samples every RSS_EVERY s): a leak grows with time; the load's own buffers (20
    #: workers with up to 3 x 8 MiB in use and 3 x 8 MiB watched) come and go.
    rss_growth_bytes: int = 128 * MIB


BOUNDS: Final = Bounds()


def _rss() -> int:
    """Resident set size, after the allocator has given back what it can: freed buffers
    of 16 threads sit in 16 malloc arenas otherwise, which is caching, not a leak."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _count(path: str) -> int:
    return len(os.listdir(path))


def _server_connections(admin: AdminConnection) -> int:
    info = admin.command("INFO", "clients").decode()
    line = next(x for x in info.splitlines() if x.startswith("connected_clients:"))
    return int(line.split(":")[1])


@dataclass
class Worker:
    """One thread's (or task's) keys and what the server must hold for each."""

    name: str
    rng: random.Random
    keys: list[str]
    sizes: dict[str, int]
    state: dict[str, str] = field(default_factory=dict)  # present | absent | unknown
    #: (key, "present" | "absent"): until when an unknown-outcome SET / DEL may still land.
    late: dict[tuple[str, str], float] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)

    watched: list[tuple[list[bytearray], list[bytes]]] = field(default_factory=list)
    #: The last operations on each key, for the message when a check fails.
    history: dict[str, deque[str]] = field(default_factory=dict)

    def size(self, key: str) -> int:
        return self.sizes[key]

    def watch(self, bufs: list[bytearray]) -> None:
        """Remember the buffers of a call that has returned, as they are now."""
        self.watched.append((bufs, [bytes(b) for b in bufs]))

    def check_watched(self) -> None:
        """The buffer rule: no call's buffers changed after it returned."""
        for bufs, then in self.watched:
            assert [bytes(b) for b in bufs] == then, "a buffer was written after its call"
        del self.watched[:-1]  # the last one stays watched across later operations


def _check_failures(r: BatchResult) -> None:
    for s, f in zip(r.statuses, r.failures):
        if s in (KeyStatus.OK, KeyStatus.MISS):
            assert f is None, f"a key that did not fail carries {f!r}"
        else:
            assert f is not None and STATUS_OF_KIND[f.kind] is s, f"{s.name} with {f!r}"


def _note(w: Worker, op: str, k: str, s: KeyStatus, f: Failure | None) -> None:
    kind = "" if f is None else f"/{f.kind.name}{' in flight' if f.in_flight else ''}"
    w.history.setdefault(k, deque(maxlen=HISTORY)).append(f"{op} {s.name}{kind}")


def _after_write(w: Worker, keys: list[str], r: BatchResult, answered: str) -> None:
    _check_failures(r)
    op = "SET" if answered == "present" else "DEL"
    for k, s, f in zip(keys, r.statuses, r.failures):
        w.statuses[s.name] += 1
        _note(w, op, k, s, f)
        if s is KeyStatus.OK or (answered == "absent" and s is KeyStatus.MISS):
            w.state[k] = answered
        elif f is not None and f.outcome_unknown:
            # It may be applied yet: the server can still be reading its bytes.
            w.state[k] = "unknown"
            w.late[(k, answered)] = time.monotonic() + SETTLE


def _after_read(w: Worker, keys: list[str], r: BatchResult, op: str) -> None:
    _check_failures(r)
    for k, s, f in zip(keys, r.statuses, r.failures):
        w.statuses[s.name] += 1
        _note(w, op, k, s, f)
        known = w.state.get(k, "absent")
        past = "; ".join(w.history[k])
        now = time.monotonic()
        if s is KeyStatus.OK:
            late_set = w.late.get((k, "present"), 0.0) > now
            assert known != "absent" or late_set, f"{k}: a hit for a key known absent ({past})"
            w.state[k] = "present"
        elif s is KeyStatus.MISS:
            late_del = w.late.get((k, "absent"), 0.0) > now
            assert known != "present" or late_del, f"{k}: a MISS for a key known present ({past})"
            w.state[k] = "absent"


def _plan(w: Worker) -> tuple[str, list[str], bool]:
    """(op, keys, wrong_size): the next batch of a worker."""
    op = w.rng.choices(["set", "get", "exists", "delete"], weights=[3, 4, 2, 1])[0]
    keys = w.rng.sample(w.keys, w.rng.randint(1, len(w.keys)))
    return op, keys, op == "get" and w.rng.random() < 0.05


def _get_buffers(w: Worker, keys: list[str], wrong: bool) -> list[bytearray]:
    return [poisoned(w.size(k) + (1 if wrong and i == 0 else 0)) for i, k in enumerate(keys)]


def _verify_hits(keys: list[str], bufs: list[bytearray], r: BatchResult, wrong: bool) -> None:
    for i, (k, b, s) in enumerate(zip(keys, bufs, r.statuses)):
        if wrong and i == 0:
            assert s is not KeyStatus.OK, f"{k}: OK with a buffer of the wrong size"
        elif s is KeyStatus.OK:
            assert bytes(b) == keyed_value(k, len(b)), f"WRONG DATA: {k} reported OK"


def _read_result(r: BatchResult, wrong: bool) -> BatchResult:
    """A wrong-size GET's first key: its SIZE_MISMATCH says the key exists."""
    if not wrong or r.statuses[0] is not KeyStatus.SIZE_MISMATCH:
        return r
    statuses = (KeyStatus.OK, *r.statuses[1:])
    return BatchResult(r.keys, statuses, (None, *r.failures[1:]), r.ok)


def _run_sync(client: respkv.Client, w: Worker, stop: threading.Event) -> None:
    while not stop.is_set():
        op, keys, wrong = _plan(w)
        if op == "set":
            values = [keyed_value(k, w.size(k)) for k in keys]
            _after_write(w, keys, client.batch_set(keys, values), "present")
        elif op == "delete":
            _after_write(w, keys, client.batch_delete(keys), "absent")
        elif op == "exists":
            _after_read(w, keys, client.batch_exists(keys), "EXISTS")
        elif w.rng.random() < ABANDON:
            # A deadline shorter than the GET: whatever came back, nothing may write
            # into these buffers once the call has returned.
            bufs = _get_buffers(w, keys, wrong)
            r = client.batch_get(keys, bufs, timeout=w.rng.uniform(*ABANDON_AFTER))
            _verify_hits(keys, bufs, r, wrong)
            _after_read(w, keys, _read_result(r, wrong), "GET")
            w.watch(bufs)
        else:
            bufs = _get_buffers(w, keys, wrong)
            r = client.batch_get(keys, bufs)
            _verify_hits(keys, bufs, r, wrong)
            _after_read(w, keys, _read_result(r, wrong), "GET")
        w.check_watched()


async def _run_async(client: respkv.aio.AsyncClient, w: Worker, stop: threading.Event) -> None:
    while not stop.is_set():
        op, keys, wrong = _plan(w)
        if op == "set":
            values = [keyed_value(k, w.size(k)) for k in keys]
            _after_write(w, keys, await client.batch_set(keys, values), "present")
        elif op == "delete":
            _after_write(w, keys, await client.batch_delete(keys), "absent")
        elif op == "exists":
            _after_read(w, keys, await client.batch_exists(keys), "EXISTS")
        elif w.rng.random() < ABANDON:
            # The awaiting task is cancelled: once the await has ended, nothing may
            # write into these buffers (the cancel is real, not just the wait's).
            bufs = _get_buffers(w, keys, wrong)
            try:
                r = await asyncio.wait_for(
                    client.batch_get(keys, bufs), w.rng.uniform(*ABANDON_AFTER)
                )
            except asyncio.TimeoutError:
                w.statuses["ABANDONED"] += 1
            else:
                _verify_hits(keys, bufs, r, wrong)
                _after_read(w, keys, _read_result(r, wrong), "GET")
            w.watch(bufs)
        else:
            bufs = _get_buffers(w, keys, wrong)
            r = await client.batch_get(keys, bufs)
            _verify_hits(keys, bufs, r, wrong)
            _after_read(w, keys, _read_result(r, wrong), "GET")
        w.check_watched()


FAULTS: Final = ("reset", "cut-replies", "cut-requests", "stall-replies", "stall-requests",
                  "trickle", "refuse")  # fmt: skip


def _fault(proxy: FaultProxy, name: str, rng: random.Random, stop: threading.Event) -> None:
    if name == "reset":
        proxy.reset_all()
    elif name == "cut-replies":
        proxy.cut_after(rng.randrange(8 * MIB), how=rng.choice(["reset", "close"]))
    elif name == "cut-requests":
        proxy.cut_after(rng.randrange(8 * MIB), "requests")
    elif name.startswith("stall"):
        proxy.stall("requests" if name == "stall-requests" else "replies")
        stop.wait(rng.uniform(0.05, 2 * OP_TIMEOUT))  # some stalls outlast op_timeout
        proxy.unstall()
    elif name == "trickle":
        proxy.trickle()
        stop.wait(rng.uniform(0.02, 0.1))
        proxy.trickle(on=False)
    else:
        proxy.refuse(rng.uniform(0.05, 0.3))


def _faults(
    proxy: FaultProxy, stop: threading.Event, rng: random.Random, seen: Counter[str]
) -> None:
    order: list[str] = []
    while not stop.wait(rng.uniform(*FAULT_EVERY)):
        if not order:  # every kind once per round, in a random order
            order = rng.sample(FAULTS, len(FAULTS))
        name = order.pop()
        _fault(proxy, name, rng, stop)
        seen[name] += 1
    proxy.unstall()
    proxy.trickle(on=False)
    proxy.allow()


def _workers(prefix: str, count: int, seed: int) -> list[Worker]:
    out = []
    for i in range(count):
        keys = [f"soak:{prefix}{i}:{j}" for j in range(KEYS_PER_WORKER)]
        # Sizes in turn over all workers' keys: every size is in use all the time.
        sizes = {k: SIZES[(i * KEYS_PER_WORKER + j) % len(SIZES)] for j, k in enumerate(keys)}
        out.append(Worker(f"{prefix}{i}", random.Random(seed + i), keys, sizes))
    return out


def _async_thread(
    opts: ConnectionOptions, backend: str, workers: list[Worker], stop: threading.Event
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    async def main() -> None:
        async with await respkv.aio.connect(opts, backend=backend) as client:
            await asyncio.gather(*(_run_async(client, w, stop) for w in workers))

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    return threading.Thread(target=run, name="soak-asyncio"), errors


@dataclass
class Report:
    faults: Counter[str]
    statuses: Counter[str]
    rss_mid: int
    rss_end: int


def _load(
    opts: ConnectionOptions,
    backend: str,
    proxy: FaultProxy,
    sync_workers: list[Worker],
    async_workers: list[Worker],
) -> Report:
    """Run the load for SECONDS; what happened, and the RSS in its second and last
    quarters."""
    stop = threading.Event()
    faults: Counter[str] = Counter()
    errors: list[BaseException] = []
    client = respkv.connect(opts, backend=backend)

    def guarded(w: Worker) -> None:
        try:
            _run_sync(client, w, stop)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=guarded, args=(w,)) for w in sync_workers]
    aio_thread, aio_errors = _async_thread(opts, backend, async_workers, stop)
    fault_thread = threading.Thread(target=_faults, args=(proxy, stop, random.Random(7), faults))
    for t in [*threads, aio_thread, fault_thread]:
        t.start()
    samples: list[int] = []
    while not stop.wait(RSS_EVERY) and len(samples) * RSS_EVERY < SECONDS:
        samples.append(_rss())
    stop.set()
    for t in [*threads, aio_thread, fault_thread]:
        t.join(60)
        assert not t.is_alive(), f"{t.name} did not finish: a hang"
    client.close()
    assert not errors and not aio_errors, (errors + aio_errors)[0]
    statuses: Counter[str] = Counter()
    for w in sync_workers + async_workers:
        w.check_watched()
        w.watched.clear()  # their buffers are not the process's to keep
        statuses.update(w.statuses)
    quarter = max(1, len(samples) // 4)
    rss_mid = int(statistics.median(samples[quarter : 2 * quarter]))
    rss_end = int(statistics.median(samples[-quarter:]))
    return Report(faults, statuses, rss_mid, rss_end)


def _settle(what: str, value: Callable[[], int], limit: int) -> int:
    """The value once it is at most ``limit`` (bounded wait: closes take effect async)."""
    deadline = time.monotonic() + 10
    v = value()
    while v > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        v = value()
    return v


@pytest.fixture(params=["python", "native"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """The two engines (the cluster router adds nothing here: one node)."""
    name: str = request.param
    if name == "native":
        try:
            load_native()
        except ImportError as exc:
            if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
                pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
            pytest.skip(f"native backend not built: {exc}")
    return name


@pytest.mark.slow
def test_soak(make_server: Callable[..., LocalServer], backend_name: str) -> None:
    server = make_server()
    direct = ConnectionOptions(host=server.host, port=server.port)
    with FaultProxy(server.host, server.port) as proxy, AdminConnection(direct) as admin:
        opts = direct.replace(
            host=proxy.host,
            port=proxy.port,
            num_workers=4,
            op_timeout=OP_TIMEOUT,
            connect_timeout=1.0,
            reconnect_backoff_max=0.1,
        )
        sync_workers = _workers("t", THREADS, 1000)
        async_workers = _workers("a", ASYNC_TASKS, 2000)
        for w in sync_workers + async_workers:
            for k in w.keys:
                keyed_value(k, w.size(k))  # generated (and cached) before the baseline
        gc.collect()
        before = {
            "fds": _count("/proc/self/fd"),
            "threads": _count("/proc/self/task"),
            "server": _server_connections(admin),
            "rss": _rss(),
        }
        # Every failed batch is logged as a warning by the clients: thousands here.
        quiet = logging.getLogger("respkv")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            report = _load(opts, backend_name, proxy, sync_workers, async_workers)
        finally:
            quiet.setLevel(level)
        gc.collect()
        after = {
            "fds": _settle("fds", lambda: _count("/proc/self/fd"), before["fds"]),
            "threads": _settle("threads", lambda: _count("/proc/self/task"), before["threads"]),
            "server": _settle("server", lambda: _server_connections(admin), before["server"]),
            "rss": _rss(),
        }
    print(f"\nsoak {backend_name} {SECONDS:g} s: {dict(report.statuses)}")
    print(f"faults: {dict(report.faults)}")
    print(f"before {before}\nafter  {after}\nrss mid/end {report.rss_mid}/{report.rss_end}")
    assert report.statuses["OK"] > 100, "the load hardly ran"
    assert after["fds"] - before["fds"] <= BOUNDS.fds, "descriptors left behind"
    assert after["threads"] - before["threads"] <= BOUNDS.threads, "threads left behind"
    assert after["server"] - before["server"] <= BOUNDS.server_connections, "server connections"
    assert after["rss"] - before["rss"] <= BOUNDS.rss_after_bytes, "RSS kept after close"
    assert report.rss_end - report.rss_mid <= BOUNDS.rss_growth_bytes, "RSS grows during the load"
