"""The asyncio client: awaitable batches, deadlines, real cancellation, use from another
thread's loop, single-key helpers, prefix, ping/check and counters."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref
from collections.abc import Callable

import numpy as np
import pytest

import respkv.aio
from respkv import ConnectionOptions, ErrorKind, KeyStatus, ResultError
from respkv.errors import ReplyError
from respkv.testing.faultproxy import FaultProxy
from respkv.testing.servers import free_port

MIB = 1 << 20
POISON = 0xA5
#: Loop turns allowed for a task to reach its first await (it takes one or two).
MAX_TURNS = 100


async def _until(cond: Callable[[], bool], turns: int = MAX_TURNS) -> None:
    """Yield to the loop until ``cond()`` holds (bounded in turns, not in time)."""
    for _ in range(turns):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def test_round_trip_and_concurrency(redis_options: ConnectionOptions, backend_name: str) -> None:
    async def main() -> None:
        async with await respkv.aio.connect(redis_options, backend=backend_name) as c:
            vals = [bytes([i]) * 10_000 for i in range(20)]
            keys = [f"aio:{i}" for i in range(20)]
            r = await c.batch_set(keys, vals)
            assert r.ok
            outs = [[bytearray(10_000) for _ in keys] for _ in range(5)]
            results = await asyncio.gather(*(c.batch_get(keys, o) for o in outs))
            assert all(g.ok for g in results)
            assert all([bytes(b) for b in o] == vals for o in outs)
            e = await c.batch_exists([*keys[:2], "aio:none"])
            assert e.statuses == (KeyStatus.OK, KeyStatus.OK, KeyStatus.MISS)
            d = await c.batch_delete(keys)
            assert d.ok and c.in_flight == 0

    asyncio.run(main())


def test_cancelled_await_ends_the_batch_before_it_returns(
    redis_options: ConnectionOptions, backend_name: str, fault_proxy: FaultProxy
) -> None:
    """Before: cancelling the await left the batch running (``in_flight == 1``) and
    writing into the buffers after the cancelled await had returned."""
    opts = redis_options.replace(host=fault_proxy.host, port=fault_proxy.port)

    async def main() -> None:
        async with await respkv.aio.connect(opts, backend=backend_name) as c:
            size = MIB
            keys = [f"can:{i}" for i in range(8)]
            assert (await c.batch_set(keys, [np.full(size, i, np.uint8) for i in range(8)])).ok
            out = [np.full(size, POISON, dtype=np.uint8) for _ in keys]
            ref = weakref.ref(out[0])
            fault_proxy.stall()  # the GET cannot complete on its own
            task = asyncio.ensure_future(c.batch_get(keys, out))
            await _until(lambda: c.in_flight == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert c.in_flight == 0, "the cancelled batch completed before the await ended"
            stats = c.stats()
            assert stats.batches == 2 and stats.errors.get(ErrorKind.CANCELLED, 0) >= 1
            for o in out:
                o.fill(POISON)
            fault_proxy.unstall()  # held replies go to the dropped connection, nowhere else
            fresh = [np.zeros(size, dtype=np.uint8) for _ in keys]
            assert (await c.batch_get(keys, fresh)).ok
            assert all((f == i).all() for i, f in enumerate(fresh))
            assert all((o == POISON).all() for o in out), "a write followed the cancelled await"
            del task, out
            gc.collect()
            assert ref() is None, "nothing keeps a settled batch's buffers"

    asyncio.run(main())


def test_batch_deadline_and_asyncio_timeout(
    redis_options: ConnectionOptions, backend_name: str, fault_proxy: FaultProxy
) -> None:
    opts = redis_options.replace(host=fault_proxy.host, port=fault_proxy.port, num_workers=2)

    async def main() -> None:
        async with await respkv.aio.connect(opts, backend=backend_name) as c:
            assert (await c.batch_set(["t:a", "t:b"], [b"1" * 1000, b"2" * 1000])).ok
            fault_proxy.stall()
            r = await c.batch_exists(["t:a", "t:b"], timeout=0.3)
            assert r.statuses == (KeyStatus.TIMEOUT,) * 2
            assert all(f is not None and f.kind is ErrorKind.DEADLINE for f in r.failures)
            with pytest.raises(asyncio.TimeoutError):  # wait_for cancels the await
                await asyncio.wait_for(c.batch_get(["t:a"], [bytearray(1000)]), 0.3)
            assert c.in_flight == 0
            fault_proxy.unstall()
            assert (await c.batch_exists(["t:a", "t:b"])).ok
            with pytest.raises(ValueError, match="timeout"):
                await c.batch_exists(["t:a"], timeout=float("inf"))

    asyncio.run(main())


def test_single_key_helpers_prefix_ping_and_stats(
    redis_options: ConnectionOptions, backend_name: str
) -> None:
    async def main() -> None:
        async with await respkv.aio.connect(
            redis_options, backend=backend_name, prefix="ap:", check=True
        ) as c:
            assert await c.ping()
            await c.set("one", b"value-1")
            buf = bytearray(7)
            assert await c.get_into("one", buf) and buf == b"value-1"
            assert await c.get("one") == b"value-1" and await c.get("none") is None
            assert await c.exists("one") and not await c.exists("none")
            assert not await c.get_into("none", bytearray(7))
            with pytest.raises(ResultError, match="SIZE_MISMATCH"):
                await c.get_into("one", bytearray(3))
            assert await c.batch_get_bytes(["one", "none"]) == [b"value-1", None]
            assert await c.batch_strlen(["one", "none"]) == [7, 0]
            assert await c.command("GET", "ap:one") == b"value-1"  # raw: no prefix
            await c.command("SADD", "ap:set", "m")
            with pytest.raises(ReplyError, match="WRONGTYPE"):
                await c.get("set")
            assert await c.delete("one") and not await c.delete("one")
            s = c.stats()
            assert s.batches >= 8 and s.errors == {ErrorKind.SIZE_MISMATCH: 1}
            assert s.bytes_out == 7 and s.bytes_in >= 14

        port = free_port()
        with pytest.raises(ConnectionError, match=rf"127\.0\.0\.1:{port}"):
            await respkv.aio.connect(f"resp://127.0.0.1:{port}", backend=backend_name, check=True)

    asyncio.run(main())


def test_awaitable_from_another_threads_loop_and_cancel_hops(
    redis_options: ConnectionOptions, backend_name: str, fault_proxy: FaultProxy
) -> None:
    opts = redis_options.replace(host=fault_proxy.host, port=fault_proxy.port, num_workers=2)

    async def owner() -> respkv.aio.AsyncClient:
        return await respkv.aio.connect(opts, backend=backend_name)

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        client = asyncio.run_coroutine_threadsafe(owner(), loop).result(30)

        async def in_flight() -> int:
            return client.in_flight

        async def other() -> None:
            assert (await client.batch_set(["x-thread"], [b"v"])).ok
            assert (await client.batch_exists(["x-thread"])).hits == [True]
            fault_proxy.stall()
            task = asyncio.ensure_future(client.batch_get(["x-thread"], [bytearray(1)]))
            for _ in range(MAX_TURNS):  # bounded: until the owner loop has the batch
                await asyncio.sleep(0.01)
                if asyncio.run_coroutine_threadsafe(in_flight(), loop).result(10):
                    break
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # The hop returned only after the owner loop had settled the batch.
            assert asyncio.run_coroutine_threadsafe(in_flight(), loop).result(10) == 0
            fault_proxy.unstall()

        asyncio.run(other())

        async def close_from_here() -> None:
            await client.close()  # hops to the owner loop too

        asyncio.run(close_from_here())
        assert client.closed
    finally:
        fault_proxy.unstall()
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        loop.close()
