"""Pure engine: a receive allocates nothing (issue 13).

The pure engine used to receive every reply that does not land in a caller's buffer
with ``sock.recv(RECV_CHUNK)``: a fresh 256 KiB bytes object per call, shrunk to what
arrived. Where glibc's mmap threshold is at its default (a fresh process, or one that
has freed no large block yet) each of those is an ``mmap``, an ``mremap`` and a
``munmap``, per SET reply: 0.5 MiB SETs at 4 workers ran at 0.72x the rate and 1.6x the
client CPU per GB of the fix (docs/performance.md, "Third pass"). Each connection (and
each cluster link) now receives into one buffer of its own, made once.

Checked with ``tracemalloc``, which sees every Python allocation on every thread: the
peak while a batch's replies are received stays far below ``RECV_CHUNK``, where a
single receive of the old code reaches it.
"""

from __future__ import annotations

import tracemalloc
from typing import Final

from respkv import ConnectionOptions, KeyStatus
from respkv._cluster.link import NodeLink
from respkv._limits import LARGE_VALUE_BYTES, RECV_CHUNK
from respkv._pyengine import PyConnector
from respkv.testing import wait_for

WAIT: Final = 20.0
#: What a batch of these may allocate while it runs: its small requests and parsed
#: replies. One ``recv(RECV_CHUNK)`` is twice this.
BUDGET: Final = RECV_CHUNK // 2


def traced_peak(run: object) -> int:
    """Peak of traced allocations (bytes above the start) while ``run()`` runs."""
    assert callable(run)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


def test_replies_are_received_without_allocating(redis_options: ConnectionOptions) -> None:
    conn = PyConnector(redis_options.replace(num_workers=2))
    try:
        keys = [f"recv:{i}" for i in range(16)]
        values = [bytes([i]) * (LARGE_VALUE_BYTES + 1) for i in range(len(keys))]
        # Connect both workers (and import what the first batch imports) untraced.
        wait_for(conn, conn.submit_batch_exists(keys), WAIT)
        done: list[tuple[KeyStatus, ...]] = []

        def batches() -> None:
            # Large SETs: each answered by +OK, received through the reader's buffer;
            # then EXISTS: hundreds of small replies.
            done.append(wait_for(conn, conn.submit_batch_set(keys, values), WAIT).statuses)
            many = keys * 40
            done.append(wait_for(conn, conn.submit_batch_exists(many), WAIT).statuses)

        peak = traced_peak(batches)
        assert done == [(KeyStatus.OK,) * len(keys), (KeyStatus.OK,) * (len(keys) * 40)]
        assert peak < BUDGET, f"receiving replies allocated up to {peak} bytes"
    finally:
        conn.close()


def test_cluster_link_receives_without_allocating(redis_options: ConnectionOptions) -> None:
    """The cluster's blocking node link receives the same way."""
    link = NodeLink(redis_options, WAIT)
    try:
        link.call([("SET", "recv:link", b"x" * 100)], WAIT)
        peak = traced_peak(lambda: [link.call([("GET", "recv:link")], WAIT) for _ in range(50)])
        assert peak < BUDGET, f"the link's receives allocated up to {peak} bytes"
    finally:
        link.close()
