"""The parts of :mod:`respkv.kvstore` (the public module, which exports what users
need): :mod:`~respkv._kvstore.records` (``chunk_key``, ``StoreUsage``,
``EvictionReport``), :mod:`~respkv._kvstore.recovery` (counting keys already on the
server: SCAN and STRLEN) and :mod:`~respkv._kvstore.background` (the eviction thread and
the finalizer of a store dropped without ``close()``). None imports
:mod:`respkv.kvstore`.
"""
