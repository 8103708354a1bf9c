"""Expiry on SET: ``submit_batch_set(..., ttl=)`` stores every key with ``PX <ms>``.

What the server says is the proof: ``PTTL`` (read over a plain admin connection) of a
key stored with ``ttl`` lies in ``(0, ttl]`` milliseconds; nothing here sleeps for a
key to expire. The value sizes cross the engines' inline threshold, so both ways a SET
is written (the value copied into the request, and header + caller's buffer + tail) are
covered, and a GET afterwards shows the connection stayed in sync behind the extra
arguments.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from respkv import ConnectionOptions, Connector, KeyStatus
from respkv._admin import AdminConnection
from respkv._limits import INLINE_VALUE_BYTES, LARGE_VALUE_BYTES
from respkv._validate import MAX_TTL
from respkv.testing import wait_for

#: Sizes around the inline threshold and one large value (sent from the caller's buffer).
SIZES = (0, 1, INLINE_VALUE_BYTES - 1, INLINE_VALUE_BYTES, LARGE_VALUE_BYTES + 3, 1 << 20)
#: A ttl long enough never to pass during a test, short enough to be a real expiry.
TTL = 300.0


@pytest.fixture
def admin(redis_options: ConnectionOptions) -> Iterator[AdminConnection]:
    with AdminConnection(redis_options) as conn:
        yield conn


def _pttls(admin: AdminConnection, keys: Sequence[str]) -> list[int]:
    return [int(n) for n in admin.pipeline([("PTTL", k) for k in keys])]


def _values(sizes: Sequence[int]) -> list[bytes]:
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, s, dtype=np.uint8).tobytes() for s in sizes]


def test_set_with_ttl_expires(connector: Connector, admin: AdminConnection) -> None:
    keys = [f"ttl:{s}" for s in SIZES]
    vals = _values(SIZES)
    c = wait_for(connector, connector.submit_batch_set(keys, vals, ttl=TTL))
    assert c.ok and c.statuses == (KeyStatus.OK,) * len(keys)
    for key, pttl in zip(keys, _pttls(admin, keys), strict=True):
        assert 0 < pttl <= TTL * 1000, (key, pttl)
    out = [bytearray(s) for s in SIZES]
    g = wait_for(connector, connector.submit_batch_get(keys, out))
    assert g.statuses == (KeyStatus.OK,) * len(keys)
    assert [bytes(b) for b in out] == vals


def test_set_without_ttl_clears_the_expiry(connector: Connector, admin: AdminConnection) -> None:
    keys = ["ttl:clear:small", "ttl:clear:large"]
    vals = _values((10, LARGE_VALUE_BYTES))
    assert wait_for(connector, connector.submit_batch_set(keys, vals, ttl=TTL)).ok
    for key, pttl in zip(keys, _pttls(admin, keys)):
        assert pttl > 0, f"{key}: PTTL {pttl} after a SET with ttl={TTL}"
    assert wait_for(connector, connector.submit_batch_set(keys, vals)).ok
    assert _pttls(admin, keys) == [-1, -1]  # -1: the key exists and has no expiry


@pytest.mark.parametrize(("ttl", "most_ms"), [(2.5, 2500), (0.0004, 1), (1, 1000)])
def test_ttl_in_milliseconds(
    connector: Connector, admin: AdminConnection, ttl: float, most_ms: int
) -> None:
    """Fractions of a second are kept (``PX``); below a millisecond rounds up to 1 ms.
    A key may already be gone when PTTL is read (-2) only for the 1 ms case."""
    key = f"ttl:ms:{ttl}"
    assert wait_for(connector, connector.submit_batch_set([key], [b"v"], ttl=ttl)).ok
    (pttl,) = _pttls(admin, [key])
    if most_ms == 1:
        assert pttl in (-2, 0, 1)
    else:
        assert 0 < pttl <= most_ms


def test_ttl_on_a_batch_spread_over_every_worker(
    connector: Connector, admin: AdminConnection
) -> None:
    n = 200  # several tiles per batch and pipelined runs on each connection
    keys = [f"ttl:many:{i}" for i in range(n)]
    vals = [b"x" * (i % 50) for i in range(n)]
    c = wait_for(connector, connector.submit_batch_set(keys, vals, ttl=TTL))
    assert c.statuses == (KeyStatus.OK,) * n
    for key, pttl in zip(keys, _pttls(admin, keys)):
        assert 0 < pttl <= TTL * 1000, f"{key}: PTTL {pttl} after a SET with ttl={TTL}"


BAD_TTLS: list[tuple[Any, type[Exception]]] = [
    (0, ValueError),
    (-1.0, ValueError),
    (float("nan"), ValueError),
    (float("inf"), ValueError),
    (MAX_TTL * 2, ValueError),
    (True, TypeError),
    ("10", TypeError),
]


@pytest.mark.parametrize(("ttl", "exc"), BAD_TTLS)
def test_bad_ttl_raises_at_submit(connector: Connector, ttl: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="ttl"):
        connector.submit_batch_set(["ttl:bad"], [b"v"], ttl=ttl)
    c = wait_for(connector, connector.submit_batch_exists(["ttl:bad"]))
    assert c.statuses == (KeyStatus.MISS,)  # nothing was sent


def test_max_ttl_is_accepted(connector: Connector, admin: AdminConnection) -> None:
    assert wait_for(connector, connector.submit_batch_set(["ttl:max"], [b"v"], ttl=MAX_TTL)).ok
    (pttl,) = _pttls(admin, ["ttl:max"])
    assert 0 < pttl <= MAX_TTL * 1000
