"""The parts of :mod:`respkv.config` (the public module, which re-exports what users
need): :mod:`~respkv._config.keys` (every key, its type, LMCache's keys, typing
helpers) and :mod:`~respkv._config.url` (URLs into raw mappings, :func:`redact_url`).
They depend one way: ``url`` -> ``keys``; ``respkv.config`` -> both.
"""
