"""The conformance suite: the backend-agnostic tests every connector must pass.

Shipped in the wheel, so that ``pip install respkv[conformance]`` is all a connector
author needs. Run it against your own factory
(``factory(options: respkv.ConnectionOptions) -> respkv.Connector``)::

    respkv-conformance mypkg.module:factory            # or path/to/file.py:factory
    respkv-conformance mypkg.module:factory -n 4 -k "not fault_matrix"
    pytest --pyargs respkv.conformance --connector mypkg.module:factory

``respkv-conformance`` runs with its own pytest configuration (``conformance.ini`` here),
never the caller's. The suite needs a ``redis-server`` on PATH (``valkey-server`` too when
present); the fixtures start throwaway servers on free loopback ports. See README.md.
"""
