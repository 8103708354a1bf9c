"""respkv as an L2 adapter of LMCache's multiprocess (MP) server.

LMCache (0.5.6) builds its L2 adapters from ``--l2-adapter JSON`` arguments: the JSON's
``type`` selects a config class and a factory registered by name
(``register_l2_adapter_type`` / ``register_l2_adapter_factory`` in
``lmcache/v1/distributed/l2_adapters/config.py`` and ``factory.py``). This module gives
respkv three ways in, from the smallest change to an LMCache command line up:

1. ``{"type": "native_plugin", "module_path": "respkv.compat.lmcache", "class_name":
   "LMCacheRedisClient", "adapter_params": {...}}``: LMCache's own
   ``NativeConnectorL2Adapter`` wraps :class:`respkv.compat.lmcache.LMCacheRedisClient`.
   Needs nothing from this module.
2. ``{"type": "plugin", "module_path": "respkv.compat.lmcache_plugin", "class_name":
   "RespkvL2Adapter", "adapter_params": {...}}``: LMCache's ``plugin`` type loads
   :class:`RespkvL2Adapter` and, by its naming convention (class name + ``Config``),
   parses ``adapter_params`` with :class:`RespkvL2AdapterConfig`, so a bad key fails at
   startup with respkv's message.
3. ``{"type": "respkv", ...}``: the type name registered when this module is imported.
   LMCache imports nothing of ours before it parses its arguments, so the server is
   started through ``python -m respkv.compat.lmcache_run`` (see that module), which
   imports this one first. A child process that unpickles a config imports this module
   (the config's class lives here) and so registers the type too.

``adapter_params`` (2.) and the ``respkv`` JSON (3.) take any connection key of
:mod:`respkv.config` (``url``, ``host``, ``port``, ``num_workers``, ``tls``,
``op_timeout``, ...) plus ``max_capacity_gb`` and ``batch_timeout``; LMCache's generic
keys (``eviction``, ``affinity_tag``, ``shared``, ``persist_enabled``, ``serde``) are
LMCache's: it reads them around the adapter, so ``eviction`` may name any policy LMCache
has (``LRU``, ``ARC``, ``IsolatedLRU``, ``noop``). Credentials come from ``RESPKV_*`` /
``LMCACHE_RESP_*`` environment variables when the JSON leaves them out, so nothing
secret sits in a JSON that LMCache logs.

The adapter is LMCache's own ``NativeConnectorL2Adapter`` around
:class:`~respkv.compat.lmcache.LMCacheRedisClient`: usage accounting, locking, the
eviction listener and the demux thread are LMCache's code, unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from lmcache.v1.distributed.l2_adapters.config import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
    L2AdapterConfigBase,
    register_l2_adapter_type,
)
from lmcache.v1.distributed.l2_adapters.factory import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
    register_l2_adapter_factory,
)
from lmcache.v1.distributed.l2_adapters.native_connector_l2_adapter import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
    NativeConnectorL2Adapter,
)

from respkv.compat.lmcache import LMCacheRedisClient, options_from_params
from respkv.config import redact_url

__all__ = ["TYPE_NAME", "RespkvL2Adapter", "RespkvL2AdapterConfig", "register"]

#: The L2 adapter type name registered for respkv (LMCache's own ``resp`` is taken).
TYPE_NAME: Final = "respkv"
#: Keys of the adapter JSON that LMCache reads itself (around any adapter): not ours.
LMCACHE_KEYS: Final = frozenset(
    {"type", "eviction", "affinity_tag", "shared", "persist_enabled", "serde", "per_op_workers"}
)


class RespkvL2AdapterConfig(L2AdapterConfigBase):  # type: ignore[misc, unused-ignore]
    """The respkv adapter's settings: respkv connection keys plus ``max_capacity_gb``.

    Only the keys given are kept (no password read from the environment is stored
    here); they are validated at once, the environment included, so a mistake fails
    when LMCache parses its arguments. The ``repr`` hides the password.
    """

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        given = dict(params or {})
        capacity = given.pop("max_capacity_gb", 0)
        if isinstance(capacity, bool) or not isinstance(capacity, (int, float)) or capacity < 0:
            raise ValueError("max_capacity_gb must be a non-negative number (GiB; 0: no limit)")
        self.max_capacity_gb = float(capacity)
        self.params = given
        self._options = options_from_params(given)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RespkvL2AdapterConfig:
        return cls({k: v for k, v in d.items() if k not in LMCACHE_KEYS})

    @classmethod
    def help(cls) -> str:
        return (
            "respkv L2 adapter config fields (any connection key of respkv.config):\n"
            "- url (str): resp://host:port, resps://... (TLS), resp+unix:///path\n"
            "- host (str), port (int): instead of url; default from RESPKV_HOST/PORT, "
            "then LMCACHE_RESP_HOST/PORT, then 127.0.0.1:6379\n"
            "- num_workers (int), op_timeout, connect_timeout, batch_timeout (s), tls\n"
            "- max_capacity_gb (float): L2 capacity in GiB for LMCache's eviction "
            "(default 0 = no limit)\n"
            "Credentials: RESPKV_USERNAME/PASSWORD or LMCACHE_RESP_USERNAME/PASSWORD.\n"
            'Example: {"type": "respkv", "url": "resp://127.0.0.1:6379", '
            '"max_capacity_gb": 64}'
        )

    def __repr__(self) -> str:
        shown = {k: ("***" if k == "password" else v) for k, v in self.params.items()}
        if isinstance(shown.get("url"), str):
            shown["url"] = redact_url(shown["url"])
        return f"RespkvL2AdapterConfig({shown}, max_capacity_gb={self.max_capacity_gb:g})"


class RespkvL2Adapter(NativeConnectorL2Adapter):  # type: ignore[misc, unused-ignore]
    """LMCache's ``NativeConnectorL2Adapter`` over :class:`LMCacheRedisClient`."""

    config_class_name = "RespkvL2AdapterConfig"

    def __init__(
        self,
        config: RespkvL2AdapterConfig | Mapping[str, Any] | None = None,
        l1_memory_desc: Any = None,
    ) -> None:
        if not isinstance(config, RespkvL2AdapterConfig):
            config = RespkvL2AdapterConfig(config)
        client = LMCacheRedisClient(**config.params)
        options = client.options
        status = {
            "address": options.address,
            "tls": options.tls is not None,
            "num_workers": options.num_workers,
        }
        super().__init__(
            client,
            max_capacity_gb=config.max_capacity_gb,
            type_name=TYPE_NAME,
            extra_status=status,
        )


def _create(config: Any, l1_memory_desc: Any = None) -> RespkvL2Adapter:
    return RespkvL2Adapter(config, l1_memory_desc)


def register() -> None:
    """Register the ``respkv`` type with LMCache (idempotent)."""
    for registrar, value in (
        (register_l2_adapter_type, RespkvL2AdapterConfig),
        (register_l2_adapter_factory, _create),
    ):
        try:
            registrar(TYPE_NAME, value)
        except ValueError:
            pass  # already registered (this module imported twice, e.g. reloaded)


register()
