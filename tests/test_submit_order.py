"""respkv's connectors check a submit's arguments in one order (timeout, ttl, keys,
buffers: ``respkv._validate.check_submission``), so with several bad arguments every
backend names the same one first. The native shell used to check keys before the
timeout. (Not a conformance case: which of two bad arguments a third-party connector
names first is its own business; only the exception is the contract.)"""

from __future__ import annotations

from typing import Any

import pytest

from respkv import ConnectionOptions
from respkv.testing import ConnectorFactory


def test_checks_run_in_one_order(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    connector = connector_factory(redis_options)
    try:
        bad_keys: Any = "not-a-list"
        soon: Any = "soon"
        with pytest.raises(TypeError, match="timeout"):
            connector.submit_batch_get(bad_keys, [bytearray(1)], timeout=soon)
        with pytest.raises(TypeError, match="timeout"):
            connector.submit_batch_exists(bad_keys, timeout=soon)
        with pytest.raises(TypeError, match="ttl"):
            connector.submit_batch_set(bad_keys, [b"v"], ttl=soon)
        with pytest.raises(TypeError, match="not a single key"):
            connector.submit_batch_get(bad_keys, [b"read-only"])
    finally:
        connector.close()
