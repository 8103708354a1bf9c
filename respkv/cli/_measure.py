"""The measurement behind ``respkv bench`` and ``respkv sweep``: one verified run.

One *run* stores ``num_keys`` chunks of ``chunk_bytes`` each with one batch SET, reads
them back with one batch GET into preallocated buffers, checks every byte, and asks
EXISTS for all keys; ``warmup`` untimed runs come first, ``repeat`` timed runs follow and
the median is reported. This is the shape of LMCache's reference benchmark, whose
output format ``respkv bench`` keeps line for line, so figures from both tools can be put
side by side.

Data. Every chunk is distinct: one random block per run (``os.urandom``), copied per key
and stamped with the key's index in the first 8 bytes of every 4 KiB page. A value
delivered under the wrong key, a page left unwritten or a stale value from an earlier
run all fail the byte-for-byte check. Before each timed GET the destination buffers are
zeroed, so a GET that writes nothing cannot pass on the previous run's bytes. No numpy
is needed: ``bytearray`` copies and comparisons are ``memcpy``/``memcmp``.

Keys are ``respkv-bench:<random token>:<index>``, unique per invocation, and are deleted
at the end so a run against a shared server leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Final

from respkv._contract import BatchResult, KeyStatus

if TYPE_CHECKING:
    from respkv.client import Client

__all__ = [
    "GIB",
    "KIB",
    "MIB",
    "BenchConfig",
    "BenchReport",
    "OpStats",
    "bench_keys",
    "first_mismatch",
    "make_chunks",
    "run_bench",
    "stamp_chunk",
    "verify",
]

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB
#: Distance between two index stamps inside a chunk: one per memory page.
STAMP_STRIDE: Final = 4096


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark measures."""

    chunk_bytes: int
    num_keys: int
    num_workers: int
    repeat: int = 1
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk size must be at least 1 byte, got {self.chunk_bytes}")
        if self.num_keys < 1:
            raise ValueError(f"number of keys must be >= 1, got {self.num_keys}")
        if self.repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {self.repeat}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")

    @property
    def total_bytes(self) -> int:
        return self.chunk_bytes * self.num_keys


@dataclass
class OpStats:
    """Timings and per-key outcome of one operation over all timed runs."""

    op: str
    keys: int
    bytes: int = 0
    seconds: list[float] = field(default_factory=list)
    failed_keys: int = 0
    first_error: str | None = None
    hits: int = 0
    mismatched_keys: int = 0
    first_mismatch: str | None = None
    #: Client CPU seconds (this process: user + system, all threads) per timed run.
    cpu_seconds: list[float] = field(default_factory=list)

    @property
    def cpu_s_per_gb(self) -> float | None:
        """Median client CPU seconds per GB (1e9 bytes) moved; None without bytes."""
        if not self.bytes or not self.cpu_seconds:
            return None
        return statistics.median(self.cpu_seconds) / (self.bytes / 1e9)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.median_s if self.seconds and self.median_s > 0 else 0.0

    @property
    def ops_per_s(self) -> float:
        return self.keys / self.median_s if self.seconds and self.median_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed_keys == 0 and self.mismatched_keys == 0

    def record_failures(self, result: BatchResult) -> None:
        """Count the failed keys of one batch (the worst run is kept)."""
        failed = len(result.failed)
        if failed > self.failed_keys:
            self.failed_keys = failed
            self.first_error = result.error


@dataclass
class BenchReport:
    """Everything one ``respkv bench`` run found."""

    config: BenchConfig
    address: str
    backend: str
    set: OpStats
    get: OpStats
    exists: OpStats

    @property
    def passed(self) -> bool:
        return (
            self.set.ok
            and self.get.ok
            and self.exists.ok
            and self.exists.hits == self.config.num_keys
        )

    def failures(self) -> list[str]:
        """One line per problem, for the end of the text report."""
        lines = [
            f"{stats.op} failed: {stats.first_error}"
            for stats in (self.set, self.get, self.exists)
            if stats.failed_keys
        ]
        if self.get.mismatched_keys > self.get.failed_keys:
            lines.append(
                f"GET verification failed: {self.get.mismatched_keys} of {self.get.keys} "
                f"values are not what was stored ({self.get.first_mismatch})"
            )
        if not self.exists.failed_keys and self.exists.hits != self.config.num_keys:
            lines.append(f"EXISTS found {self.exists.hits} of {self.config.num_keys} keys")
        return lines


def make_chunks(num_keys: int, chunk_bytes: int) -> list[bytearray]:
    """``num_keys`` distinct chunks: one random block, stamped per key on every page."""
    base = os.urandom(chunk_bytes)
    chunks = []
    for index in range(num_keys):
        buf = bytearray(base)
        stamp_chunk(buf, index)
        chunks.append(buf)
    return chunks


def stamp_chunk(buf: bytearray, index: int) -> None:
    """Write ``index + 1`` into the first 8 bytes of every page of ``buf``."""
    stamp = index + 1
    words = len(buf) // 8
    if words == 0:
        buf[:] = stamp.to_bytes(8, "little")[: len(buf)]
        return
    view = memoryview(buf)[: words * 8].cast("Q")
    step = STAMP_STRIDE // 8
    count = len(range(0, words, step))
    view[::step] = array("Q", [stamp]) * count
    view.release()


def verify(expected: Sequence[bytearray], got: Sequence[bytearray], result: BatchResult) -> int:
    """How many keys are not a verified hit: a failure status, or bytes that differ."""
    return sum(
        1
        for want, have, status in zip(expected, got, result.statuses, strict=True)
        if status is not KeyStatus.OK or want != have
    )


def first_mismatch(
    expected: Sequence[bytearray], got: Sequence[bytearray], result: BatchResult
) -> str | None:
    """A readable description of the first key that did not verify."""
    for i, (want, have, status) in enumerate(zip(expected, got, result.statuses, strict=True)):
        if status is not KeyStatus.OK:
            return f"key {i}: {status.name}"
        if want != have:
            offset = next(j for j, (a, b) in enumerate(zip(want, have, strict=True)) if a != b)
            return f"key {i}: bytes differ from offset {offset}"
    return None


def bench_keys(num_keys: int, token: str | None = None) -> list[str]:
    """Unique key names for one invocation."""
    token = token or os.urandom(6).hex()
    return [f"respkv-bench:{token}:{i}" for i in range(num_keys)]


@dataclass(frozen=True)
class Phase:
    """One step of a benchmark, reported to the progress hook as it starts and ends.

    ``seconds`` is None when the step starts and its duration when it has ended;
    ``failed_keys`` counts the keys that failed in it (a GET's keys that did not verify
    included)."""

    step: int
    steps: int
    label: str  # "warmup 1/1", "run 2/3"; "" for the steps outside the rounds
    op: str  # "prepare", "SET", "GET", "EXISTS", "DELETE"
    keys: int
    seconds: float | None = None
    failed_keys: int = 0
    error: str | None = None


PhaseHook = Callable[[Phase], None]


def bench_steps(config: BenchConfig, *, with_exists: bool = True, prepare: bool = True) -> int:
    """How many :class:`Phase` steps :func:`run_bench` reports for ``config``: the data
    (unless given), SET, GET and EXISTS per round, and the final DELETE."""
    per_round = 3 if with_exists else 2
    return int(prepare) + (config.warmup + config.repeat) * per_round + 1


#: What one step found: how many keys failed, and the first failure.
_Outcome = tuple[int, "str | None"]


def _no_check(result: object) -> _Outcome:
    return 0, None


class _Run:
    """The state of one :func:`run_bench` call: statistics and the step counter."""

    def __init__(
        self, client: Client, config: BenchConfig, hook: PhaseHook | None, steps: int
    ) -> None:
        self.client, self.config, self.hook, self.steps = client, config, hook, steps
        self.step = 0
        n, total = config.num_keys, config.total_bytes
        self.set, self.get = OpStats("SET", n, total), OpStats("GET", n, total)
        self.exists = OpStats("EXISTS", n)
        self.exists_hits: list[int] = []
        self.last_cpu = 0.0  # client CPU seconds of the last phase's work

    def phase(
        self,
        label: str,
        op: str,
        work: Callable[[], BatchResult | None],
        check: Callable[[BatchResult], _Outcome] = _no_check,
    ) -> float:
        """Time ``work`` as one step, then ``check`` its result (untimed), telling the
        hook as the step starts and ends; return the seconds ``work`` took."""
        self.step += 1
        phase = Phase(self.step, self.steps, label, op, self.config.num_keys)
        if self.hook is not None:
            self.hook(phase)
        c0, t0 = time.process_time(), time.perf_counter()
        result = work()
        elapsed = time.perf_counter() - t0
        self.last_cpu = time.process_time() - c0
        failed, error = (0, None) if result is None else check(result)
        if self.hook is not None:
            self.hook(dataclasses.replace(phase, seconds=elapsed, failed_keys=failed, error=error))
        return elapsed

    def check_set(self, result: BatchResult) -> _Outcome:
        self.set.record_failures(result)
        return len(result.failed), result.error

    def check_get(
        self, src: list[bytearray], dst: list[bytearray], result: BatchResult
    ) -> _Outcome:
        self.get.record_failures(result)
        bad = verify(src, dst, result)
        mismatch = first_mismatch(src, dst, result) if bad else None
        if bad > self.get.mismatched_keys:
            self.get.mismatched_keys, self.get.first_mismatch = bad, mismatch
        return bad, result.error or mismatch

    def round(
        self,
        index: int,
        keys: list[str],
        src: list[bytearray],
        dst: list[bytearray],
        *,
        with_exists: bool,
    ) -> None:
        """Round ``index`` (warmups first): SET, GET (verified) and EXISTS as steps."""
        cfg, client = self.config, self.client
        timed = index >= cfg.warmup
        label = (
            f"run {index - cfg.warmup + 1}/{cfg.repeat}"
            if timed
            else f"warmup {index + 1}/{cfg.warmup}"
        )
        elapsed = self.phase(label, "SET", partial(client.batch_set, keys, src), self.check_set)
        if timed:
            self.set.seconds.append(elapsed)
            self.set.cpu_seconds.append(self.last_cpu)
        zero = bytes(cfg.chunk_bytes)
        for buf in dst:  # zeroed (untimed): a GET that writes nothing cannot pass on old bytes
            buf[:] = zero
        check_get = partial(self.check_get, src, dst)
        elapsed = self.phase(label, "GET", partial(client.batch_get, keys, dst), check_get)
        if timed:
            self.get.seconds.append(elapsed)
            self.get.cpu_seconds.append(self.last_cpu)
        if with_exists:
            check = partial(self.check_exists, timed)
            elapsed = self.phase(label, "EXISTS", partial(client.batch_exists, keys), check)
            if timed:
                self.exists.seconds.append(elapsed)

    def check_delete(self, result: BatchResult) -> _Outcome:
        return len(result.failed), result.error

    def check_exists(self, timed: bool, result: BatchResult) -> _Outcome:
        self.exists.record_failures(result)
        if timed:
            self.exists_hits.append(sum(result.hits))
        return len(result.failed), result.error


def run_bench(
    client: Client,
    config: BenchConfig,
    *,
    chunks: list[bytearray] | None = None,
    keys: list[str] | None = None,
    dst: list[bytearray] | None = None,
    progress: PhaseHook | None = None,
    with_exists: bool = True,
) -> BenchReport:
    """Run ``warmup`` + ``repeat`` rounds of SET, GET (verified) and EXISTS.

    ``chunks``, ``keys`` and ``dst`` may be passed in to reuse buffers across calls
    (``respkv sweep``); the keys are deleted at the end either way. ``progress`` is
    called as each step starts and ends (:class:`Phase`; :func:`bench_steps` steps).
    """
    n = config.num_keys
    steps = bench_steps(config, with_exists=with_exists, prepare=chunks is None)
    run = _Run(client, config, progress, steps)
    src: list[bytearray] = [] if chunks is None else chunks
    if chunks is None:

        def prepare() -> None:
            src.extend(make_chunks(n, config.chunk_bytes))

        run.phase("", "prepare", prepare)
    keys = keys if keys is not None else bench_keys(n)
    dst = dst if dst is not None else [bytearray(config.chunk_bytes) for _ in range(n)]
    if not len(src) == len(keys) == len(dst) == n:
        raise ValueError("chunks, keys and dst must each have num_keys entries")
    try:
        for r in range(config.warmup + config.repeat):
            run.round(r, keys, src, dst, with_exists=with_exists)
    finally:
        run.phase("", "DELETE", partial(cleanup, client, keys), run.check_delete)
    # The worst timed run counts; without EXISTS there is nothing to find missing.
    run.exists.hits = min(run.exists_hits) if run.exists_hits else n
    return BenchReport(
        config, client.options.address, client.backend.name, run.set, run.get, run.exists
    )


def cleanup(client: Client, keys: Sequence[str]) -> BatchResult | None:
    """Delete the benchmark's keys; a failure here must not hide the results (None)."""
    if client.closed:
        return None
    try:
        return client.batch_delete(keys, timeout=60)
    except Exception:  # best effort: the results matter more
        return None
