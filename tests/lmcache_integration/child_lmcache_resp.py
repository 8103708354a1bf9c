# mypy: disable-error-code="import-not-found,import-untyped"
"""Run one case against an L2 adapter in this (child) process and print a JSON result.

``python child_lmcache_resp.py CASE KIND PORT``: ``KIND`` is an adapter kind of
``_lmhelpers.adapter_json`` (``resp`` is LMCache's own client). The parent runs this with
a deadline because LMCache's own client hangs in these cases; a result line printed
before the hang still tells what happened up to there.

Cases:
``deleted``  store 4 MiB objects, delete them, then load them (a GET of deleted keys);
``restart``  store, restart the server in place (``DEBUG RESTART``; the child starts
             its own server), then store again a few times.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lmhelpers import (
    adapter_json,
    load,
    lookup,
    make_adapter,
    memory_objs,
    object_keys,
    restart_server,
    store,
)

MIB = 1 << 20
#: How long the child waits for the load of deleted keys before calling it a hang.
LOAD_WAIT_S = 5.0


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def case_deleted(kind: str, server: Any) -> dict[str, Any]:
    _, adapter = make_adapter(adapter_json(kind, server))
    keys = object_keys("deleted", 4)
    assert store(adapter, keys, memory_objs(4, 4 * MIB, seed=1))
    adapter.delete(keys)
    after_delete = lookup(adapter, keys)
    emit({"stored": True, "found_after_delete": after_delete})
    loaded = load(adapter, keys, memory_objs(4, 4 * MIB, seed=-1), timeout=LOAD_WAIT_S)
    result = {"found_after_delete": after_delete, "loaded": loaded, "hung": loaded is None}
    emit(result)
    if loaded is None:
        os._exit(0)  # the real client's worker is stuck in recv: do not wait for close()
    adapter.close()
    return result


def case_restart(kind: str, _: Any) -> dict[str, Any]:
    from respkv.testing.servers import LocalServer

    server = LocalServer(args=["--enable-debug-command", "yes"]).start()
    try:
        _, adapter = make_adapter(adapter_json(kind, server))
        keys = object_keys("restart", 2)
        before = store(adapter, keys, memory_objs(2, MIB, seed=2))
        restart_server(server)
        after = [store(adapter, keys, memory_objs(2, MIB, seed=3)) for _ in range(4)]
        found = lookup(adapter, keys)
        result = {"before": before, "after": after, "found": found, "hung": False}
        emit(result)
        adapter.close()
        return result
    finally:
        server.stop()


def main() -> None:
    case, kind, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Server:
        host = "127.0.0.1"

    server = Server()
    server.port = port  # type: ignore[attr-defined]
    {"deleted": case_deleted, "restart": case_restart}[case](kind, server)
    os._exit(0)


if __name__ == "__main__":
    main()
