"""Fault matrix, part 3: misuse, as an LLM server's process really does it.

``fork`` after connecting (vLLM and LMCache use fork and ``multiprocessing``), ``close``
racing submits from other threads, buffers resized or closed while a batch uses them,
absurd timeouts, and a process with more than 1024 descriptors open. Fork cases run in
a fresh interpreter (``subprocess``), so that the child's exit, with its interpreter
finalisation, is the real thing and cannot disturb the test process.
"""

from __future__ import annotations

import gc
import math
import mmap
import os
import resource
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Final

import numpy as np
import pytest

from respkv import (
    Client,
    ConfigError,
    ConnectionOptions,
    Connector,
    ErrorKind,
    KeyStatus,
)
from respkv._admin import AdminConnection
from respkv._options import MAX_TIMEOUT
from respkv.config import load
from respkv.errors import ConnectionClosedError
from respkv.kvstore import KVStore
from respkv.testing import ConnectorFactory, wait_for
from respkv.testing import faultcheck as _faultcheck
from respkv.testing.faultcheck import (
    Outcome,
    check_hits,
    finish,
    keyed_value,
    poisoned,
    recover,
)
from respkv.testing.faultproxy import FaultProxy
from respkv.testing.servers import LocalServer

PROMPT: Final = 10.0
#: A fork case's interpreter: start, connect, fork, wait for the child (bounded).
SCRIPT_TIMEOUT: Final = 60.0
#: Descriptors opened before the connector in the >1024 case: past select()'s FD_SETSIZE.
FILL_FDS: Final = 1100

# The child's verdict is its exit status (0: every check held); the parent prints it.
_FORK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from respkv import ConnectionOptions
    from respkv.errors import ForkedError
    from respkv.testing import load_factory
    from respkv.testing.faultcheck import finish

    spec, host, port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    factory = load_factory(spec)
    conn = factory(ConnectionOptions(host=host, port=port, num_workers=4))
    assert finish(conn, conn.submit_batch_set(["fork:k"], [b"v"]), 10).ok

    def use_in_child():
        calls = [
            lambda: conn.submit_batch_exists(["fork:k"]),
            lambda: conn.submit_batch_set(["fork:k"], [b"w"]),
            lambda: conn.submit_batch_get(["fork:k"], [bytearray(1)]),
            lambda: conn.submit_batch_delete(["fork:k"]),
            lambda: conn.drain_completions(),
            lambda: conn.event_fd(),
            lambda: conn.cancel(1),
        ]
        for call in calls:
            try:
                call()
            except ForkedError as exc:
                assert "connect" in str(exc), str(exc)
            else:
                os._exit(3)
        conn.close()
        conn.close()

    def child():
        if mode == "use":
            use_in_child()
        elif mode == "close":
            conn.close()

    if mode.startswith("mp-"):
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        proc = ctx.Process(target=use_in_child if mode == "mp-use" else (lambda: None))
        proc.start()
        proc.join(30)
        status = {"exit": proc.exitcode} if proc.exitcode is not None else {"hung": True}
        if proc.exitcode is None:
            proc.kill()
    else:
        pid = os.fork()
        if pid == 0:
            child()
            sys.exit(0)
        deadline = time.monotonic() + 30
        while True:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raw = None
                break
            time.sleep(0.01)
        if raw is None:
            status = {"hung": True}
        elif os.WIFSIGNALED(raw):
            status = {"signal": os.WTERMSIG(raw)}
        else:
            status = {"exit": os.WEXITSTATUS(raw)}
    # The parent's connector is untouched by whatever the child did.
    parent_ok = finish(conn, conn.submit_batch_exists(["fork:k"]), 10).statuses[0].name
    conn.close()
    print(json.dumps({"child": status, "parent": parent_ok}))
    """
)

#: One server for this module's cases (see respkv.testing.faultcheck).
matrix_server = _faultcheck.matrix_server


@pytest.mark.parametrize("mode", ["exit", "close", "use", "mp-untouched", "mp-use"])
def test_fork(connector_spec: str, redis_options: ConnectionOptions, mode: str) -> None:
    """A forked child exits cleanly whatever it does with the inherited connector (issue
    9, defect 3); using it raises ForkedError at once (defect 4); the parent carries on."""
    args = [connector_spec, redis_options.host, str(redis_options.port), mode]
    _faultcheck.fork_verdict(_FORK_SCRIPT, args, SCRIPT_TIMEOUT)


#: Rounds of the close race: the window is narrow, each round is a new chance to hit it.
RACE_ROUNDS: Final = 4


def test_close_races_submits_from_8_threads(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    """Every submit either returns an id whose batch completes exactly once, or raises
    ConnectionClosedError; close() returns; nothing hangs or crashes."""
    for round_ in range(RACE_ROUNDS):
        _close_race(connector_factory, redis_options.replace(num_workers=2), round_)


def _close_race(factory: ConnectorFactory, opts: ConnectionOptions, round_: int) -> None:
    conn = factory(opts)
    ids: list[int] = []
    unexpected: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(9)

    def submitter(t: int) -> None:
        start.wait(PROMPT)
        for j in range(500):
            key = f"race:{round_}:{t}:{j}"
            try:
                bid = conn.submit_batch_set([key], [keyed_value(key, 512)])
            except ConnectionClosedError:
                return
            except BaseException as exc:
                with lock:
                    unexpected.append(exc)
                return
            with lock:
                ids.append(bid)

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    start.wait(PROMPT)
    deadline = time.monotonic() + PROMPT
    while len(ids) < 100 * (round_ + 1) and time.monotonic() < deadline:
        time.sleep(0.001)
    closer = threading.Thread(target=conn.close)
    closer.start()
    closer.join(PROMPT)
    assert not closer.is_alive(), "close() hangs while submits race it"
    for th in threads:
        th.join(PROMPT)
        assert not th.is_alive()
    assert not unexpected, unexpected
    done = conn.drain_completions()
    lost = sorted(set(ids) - {c.batch_id for c in done})
    assert not lost, f"round {round_}: {len(lost)} of {len(ids)} accepted batches never completed"
    assert sorted(c.batch_id for c in done) == sorted(ids), "a batch completed twice"
    closed = Outcome(KeyStatus.CANCELLED, ErrorKind.CLOSED)
    for c in done:
        if c.statuses[0] is not KeyStatus.OK:
            closed.check(0, c, opts.address)
    assert conn.drain_completions() == []
    with pytest.raises(ConnectionClosedError):
        conn.submit_batch_exists(["race:after"])
    conn.close()


@pytest.fixture
def redis_options(matrix_server: LocalServer) -> ConnectionOptions:
    """This module's server (one binary: misuse does not depend on it), flushed."""
    options = ConnectionOptions(host=matrix_server.host, port=matrix_server.port, num_workers=4)
    with AdminConnection(options) as a:
        a.command("FLUSHALL")
    return options


@pytest.fixture
def fault_proxy(redis_options: ConnectionOptions) -> Iterator[FaultProxy]:
    with FaultProxy(redis_options.host, redis_options.port) as proxy:
        yield proxy


@pytest.fixture
def stalled_conn(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions, fault_proxy: FaultProxy
) -> Iterator[Connector]:
    opts = redis_options.replace(
        host=fault_proxy.host, port=fault_proxy.port, num_workers=1, op_timeout=10.0
    )
    conn = connector_factory(opts)
    try:
        yield conn
    finally:
        conn.close()


SIZE: Final = 1 << 20


def test_bytearray_resized_while_in_flight(
    stalled_conn: Connector, fault_proxy: FaultProxy
) -> None:
    """A buffer in use by a batch cannot change size (BufferError); after the batch, it
    can again: the connector lets go of it."""
    conn = stalled_conn
    keys = ["m:resize"]
    assert finish(conn, conn.submit_batch_set(keys, [keyed_value(keys[0], SIZE)]), PROMPT).ok
    buf = poisoned(SIZE)
    fault_proxy.stall()
    bid = conn.submit_batch_get(keys, [buf])
    with pytest.raises(BufferError):
        buf.extend(b"x")
    with pytest.raises(BufferError):
        buf.clear()
    with pytest.raises(BufferError):
        del buf[:1]
    assert len(buf) == SIZE
    fault_proxy.unstall()
    c = finish(conn, bid, PROMPT)
    assert c.statuses == (KeyStatus.OK,), c.failures
    assert check_hits(c, keys, [buf]) == 1
    gc.collect()
    buf.extend(b"x")  # no export left once the batch is done
    recover(conn, "resize")


def test_mmap_numpy_memoryview_while_in_flight(
    stalled_conn: Connector, fault_proxy: FaultProxy
) -> None:
    """mmap.close() and ndarray.resize() are refused while a batch uses them; releasing
    the caller's own memoryview leaves the batch's hold intact. Never a write into freed
    memory: the values arrive whole."""
    conn = stalled_conn
    keys = ["m:mm:0", "m:mm:1", "m:mm:2"]
    values = [keyed_value(k, SIZE) for k in keys]
    assert finish(conn, conn.submit_batch_set(keys, values), PROMPT).ok
    mm = mmap.mmap(-1, SIZE)
    mm.write(bytes(poisoned(SIZE)))
    arr = np.full(SIZE, 0xEE, dtype=np.uint8)
    backing = poisoned(SIZE)
    view = memoryview(backing)
    fault_proxy.stall()
    bid = conn.submit_batch_get(keys, [mm, arr, view])
    with pytest.raises(BufferError):
        mm.close()
    with pytest.raises(ValueError, match="resize"):
        arr.resize(2 * SIZE)
    view.release()  # the caller's view only: the batch holds its own
    del view
    gc.collect()
    fault_proxy.unstall()
    c = finish(conn, bid, PROMPT)
    assert c.statuses == (KeyStatus.OK,) * 3, c.failures
    assert mm[:] == values[0] and arr.tobytes() == values[1] and bytes(backing) == values[2]
    gc.collect()
    mm.close()
    recover(conn, "mmap")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("op_timeout", math.inf),
        ("op_timeout", 3e6),
        ("op_timeout", 1e9),
        ("op_timeout", math.nan),
        ("op_timeout", MAX_TIMEOUT + 1),
        ("connect_timeout", math.inf),
    ],
)
def test_absurd_option_timeouts_are_refused(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match="MAX_TIMEOUT"):
        ConnectionOptions().replace(**{name: value})


def test_timeouts_at_the_bound_and_beyond(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    """op_timeout = connect_timeout = MAX_TIMEOUT works (no overflow in a worker, issue 9
    defect 5); a URL's ``op_timeout=inf`` and a batch ``timeout=`` beyond the bound are
    refused, naming it, before any I/O; bad types are TypeErrors."""
    with pytest.raises(ConfigError, match="MAX_TIMEOUT"):
        load(f"resp://{redis_options.address}?op_timeout=inf")
    opts = redis_options.replace(num_workers=2, op_timeout=MAX_TIMEOUT, connect_timeout=MAX_TIMEOUT)
    conn = connector_factory(opts)
    try:
        for bad in (math.inf, 1e9, math.nan, 0, -1.0, MAX_TIMEOUT * 2):
            with pytest.raises(ValueError, match="MAX_TIMEOUT"):
                conn.submit_batch_exists(["t"], timeout=bad)
            with pytest.raises(ValueError, match="MAX_TIMEOUT"):
                conn.submit_batch_get(["t"], [bytearray(1)], timeout=bad)
        for wrong in (True, "1", [1]):
            with pytest.raises(TypeError):
                conn.submit_batch_set(["t"], [b"v"], timeout=wrong)  # type: ignore[arg-type]
        assert conn.drain_completions() == [], "a refused submit queued a batch"
        c = finish(conn, conn.submit_batch_set(["t"], [b"v"], timeout=MAX_TIMEOUT), PROMPT)
        assert c.statuses == (KeyStatus.OK,)
        recover(conn, "bound")
    finally:
        conn.close()


@pytest.fixture
def many_fds() -> Iterator[None]:
    """More than 1024 descriptors open (normal inside an LLM server)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FILL_FDS + 512
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {want}: raise it (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(FILL_FDS)]
    try:
        yield
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_more_than_1024_fds(
    many_fds: None, connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    """Every wait works with descriptors past FD_SETSIZE (issue 9, defect 8): the
    conformance helper, the Client and the KV store."""
    opts = redis_options.replace(num_workers=2)
    conn = connector_factory(opts)
    try:
        assert conn.event_fd() > 1024
        assert wait_for(conn, conn.submit_batch_set(["fd:k"], [b"v"]), PROMPT).ok
        client = Client(opts, connector=conn)
        keys = ["fd:a", "fd:b"]
        assert client.batch_set(keys, [keyed_value(k, 5000) for k in keys]).ok
        out = [poisoned(5000), poisoned(5000)]
        r = client.batch_get(keys, out, timeout=PROMPT)
        assert r.ok, r.failures
        for key, buf in zip(keys, out):
            assert bytes(buf) == keyed_value(key, 5000), f"{key}: read back differs"
        store = KVStore(client, key_prefix="fd:")
        assert store.put(["c"], [keyed_value("fd:c", 100)]).ok
        assert store.contains(["c", "d"]).statuses == (KeyStatus.OK, KeyStatus.MISS)
        store.close()
        client.close()
    finally:
        conn.close()


def _count(path: str) -> int:
    return len(os.listdir(path))


def test_close_releases_descriptors_and_threads(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    """30 connectors opened, used and closed: the process's descriptors and threads are
    where they were (the event fd included: issue 9, defect 6)."""
    opts = redis_options.replace(num_workers=3)

    def cycle() -> None:
        conn = connector_factory(opts)
        assert finish(conn, conn.submit_batch_set(["cl:k"], [b"v"]), PROMPT).ok
        conn.close()

    cycle()  # first use: lazy imports, caches
    gc.collect()
    fds, tasks = _count("/proc/self/fd"), _count("/proc/self/task")
    for _ in range(30):
        cycle()
    gc.collect()
    deadline = time.monotonic() + PROMPT
    while _count("/proc/self/task") > tasks and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _count("/proc/self/fd") <= fds, "closed connectors leak descriptors"
    assert _count("/proc/self/task") <= tasks, "closed connectors leave threads"
