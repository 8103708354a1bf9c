"""respkv.config and LMCache's adapter JSON: LMCache's generic keys are accepted (and
ignored), LMCache-only eviction policies are refused with a message naming the supported
ones. No lmcache package needed."""

from __future__ import annotations

import logging

import pytest

from respkv import config
from respkv.errors import ConfigError

#: An LMCache ``resp`` adapter JSON with every generic key LMCache 0.5.6 accepts.
LMCACHE_JSON = {
    "type": "resp",
    "host": "127.0.0.1",
    "port": 6380,
    "num_workers": 4,
    "max_capacity_gb": 2,
    "affinity_tag": "gpu0",
    "shared": True,
    "persist_enabled": False,
    "serde": {"type": "fp8", "fp8_dtype": "float8_e4m3fn"},
    "per_op_workers": {"get": 2, "set": 2},
    "eviction": {
        "eviction_policy": "LRU",
        "trigger_watermark": 0.7,
        "eviction_ratio": 0.3,
        "extra_logging_enabled": True,
        "extra_logging_interval": 5,
    },
}


def test_lmcache_generic_keys_accepted_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="respkv.config"):
        cfg = config.load(LMCACHE_JSON, environ={})
    assert cfg.connection.port == 6380
    assert cfg.connection.num_workers == 4
    assert cfg.max_capacity_bytes == 2 * config.GIB
    assert cfg.eviction is not None
    assert (cfg.eviction.trigger_watermark, cfg.eviction.eviction_ratio) == (0.7, 0.3)
    logged = " ".join(r.getMessage() for r in caplog.records)
    for key in ("affinity_tag", "shared", "persist_enabled", "serde", "per_op_workers"):
        assert key in logged
    assert "eviction.extra_logging_enabled" in logged


@pytest.mark.parametrize(
    ("key", "value"),
    [("affinity_tag", 3), ("shared", "yes"), ("serde", "fp8"), ("per_op_workers", [1])],
)
def test_lmcache_generic_keys_type_checked(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{key}': expected"):
        config.load({key: value}, environ={})


@pytest.mark.parametrize("policy", ["ARC", "IsolatedLRU", "arc", "isolatedlru"])
def test_lmcache_only_policies_rejected_naming_supported(policy: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load({"eviction": {"eviction_policy": policy}}, environ={})
    text = str(info.value)
    assert repr(policy) in text and "supported: LRU, noop" in text


def test_lmcache_only_policy_rejected_from_url() -> None:
    with pytest.raises(ConfigError, match="supported: LRU, noop"):
        config.load("resp://127.0.0.1:6379?eviction_policy=ARC", environ={})


def test_unknown_keys_still_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'affinity'"):
        config.load({"affinity": "x"}, environ={})
    with pytest.raises(ConfigError, match=r"unknown config key 'eviction\.extra'"):
        config.load({"eviction": {"extra": 1}}, environ={})
