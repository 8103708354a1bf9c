"""The asyncio client: awaitable batches, cancellation, use from another thread's loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref

import numpy as np

import respkv.aio
from respkv import ConnectionOptions, KeyStatus
from respkv._faultproxy import FaultProxy


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


def test_cancel_keeps_buffers_until_done(
    redis_options: ConnectionOptions, backend_name: str, fault_proxy: FaultProxy
) -> None:
    opts = redis_options.replace(host=fault_proxy.host, port=fault_proxy.port)

    async def main() -> None:
        async with await respkv.aio.connect(opts, backend=backend_name) as c:
            size = 1 << 20
            src = [np.full(size, i, dtype=np.uint8) for i in range(8)]
            keys = [f"can:{i}" for i in range(8)]
            assert (await c.batch_set(keys, src)).ok
            out = [np.zeros(size, dtype=np.uint8) for _ in keys]
            ref = weakref.ref(out[0])
            fault_proxy.stall()  # the GET cannot complete until unstalled
            task = asyncio.ensure_future(c.batch_get(keys, out))
            await asyncio.sleep(0)  # let the task submit
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # The cancelled task's traceback holds its frames (and so the list): drop it.
            del task, out
            gc.collect()
            assert ref() is not None, "buffers of an in-flight batch must stay alive"
            assert c.in_flight == 1
            fault_proxy.unstall()
            # The held replies are released: the cancelled batch completes for real.
            assert (await c.batch_exists(keys)).ok
            assert c.in_flight == 0
            gc.collect()
            assert ref() is None

    asyncio.run(main())


def test_awaitable_from_another_threads_loop(
    redis_options: ConnectionOptions, backend_name: str
) -> None:
    async def owner() -> tuple[respkv.aio.AsyncClient, asyncio.AbstractEventLoop]:
        return await respkv.aio.connect(redis_options, backend=backend_name), (
            asyncio.get_running_loop()
        )

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        client, _ = asyncio.run_coroutine_threadsafe(owner(), loop).result(30)

        async def other() -> None:
            assert (await client.batch_set(["x-thread"], [b"v"])).ok
            assert (await client.batch_exists(["x-thread"])).hits == [True]

        asyncio.run(other())
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        loop.close()
