"""A native connector inherited across ``fork()`` (issue 9, defects 3 and 4).

The crash this guards against: ``Engine::~Engine`` joined worker threads that exist only
in the parent, so a child died with SIGSEGV at ``sys.exit``, at ``close()``, or even as a
``multiprocessing`` child that never touched the connector. The engine now remembers the
pid that made it; in a child, close and the destructor close descriptors only, and every
method but ``close()`` raises ``ForkedError`` at once.

Each case runs in a fresh interpreter (``subprocess``) so the child's real exit, with its
interpreter finalisation, happens, and cannot take the test process down. The connector
has six workers, each with a live connection, and a batch in flight at the fork: the
state in which the old engine crashed. The child's verdict is its exit status; the
parent waits for it on a pidfd (bounded) and prints it, then shows its own connector
still works. The same contract is checked for every backend by
``conformance/test_fault_matrix_misuse.py::test_fork``; this file adds the native
engine's descriptor accounting in the child.
"""

from __future__ import annotations

import os
import textwrap
from typing import Final

import pytest

from respkv import ConnectionOptions
from respkv.testing.faultcheck import fork_verdict

#: Bound on one case: an interpreter start, a connect, a fork, a child's exit.
SCRIPT_TIMEOUT: Final = 120
#: Bound on the child, inside the script.
CHILD_TIMEOUT: Final = 60

_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, os, select, sys
    from respkv import ConnectionOptions, KeyStatus
    from respkv._native import NativeConnector
    from respkv.errors import ForkedError
    from respkv.testing import wait_for

    host, port, mode, child_timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    conn = NativeConnector(ConnectionOptions(host=host, port=port, num_workers=6))
    keys = [f"fork:{i}" for i in range(60)]
    assert wait_for(conn, conn.submit_batch_set(keys, [b"v" * 70000] * 60)).ok  # every worker
    in_flight = conn.submit_batch_get(keys, [bytearray(70000) for _ in keys])

    def fds():
        return len(os.listdir("/proc/self/fd"))

    def child():
        if mode == "exit":
            sys.exit(0)
        if mode == "close":
            before = fds()
            conn.close()
            conn.close()
            # The event fd, six wake-ups and six sockets: 13 descriptors given back.
            sys.exit(0 if before - fds() >= 13 else 4)
        if mode == "use":
            for call in (lambda: conn.submit_batch_exists(["k"]), conn.drain_completions,
                         conn.event_fd, lambda: conn.cancel(in_flight),
                         lambda: conn.submit_batch_get(["k"], [bytearray(1)])):
                try:
                    call()
                except ForkedError as exc:
                    assert "connect anew" in str(exc)
                    continue
                sys.exit(3)
            sys.exit(0)
        raise SystemExit(f"unknown mode {mode}")

    if mode == "multiprocessing":
        proc = multiprocessing.get_context("fork").Process(target=len, args=("untouched",))
        proc.start()
        proc.join(child_timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            status = {"hung": True}
        elif proc.exitcode < 0:
            status = {"signal": -proc.exitcode}
        else:
            status = {"exit": proc.exitcode}
    else:
        pid = os.fork()
        if pid == 0:
            child()
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(child_timeout * 1000):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = {"hung": True}
        else:
            _, raw = os.waitpid(pid, 0)
            if os.WIFSIGNALED(raw):
                status = {"signal": os.WTERMSIG(raw)}
            else:
                status = {"exit": os.WEXITSTATUS(raw)}
        os.close(pidfd)
    got = wait_for(conn, in_flight)
    parent = wait_for(conn, conn.submit_batch_exists(keys[:1])).statuses[0].name
    conn.close()
    print(json.dumps({"child": status, "parent": parent, "in_flight_ok": got.ok}))
    """
)


@pytest.fixture(scope="module", autouse=True)
def _native_built() -> None:
    try:
        import respkv_native._core  # noqa: F401
    except ImportError as exc:
        if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
            pytest.fail(f"native backend required (RESPKV_REQUIRE_NATIVE=1) but: {exc}")
        pytest.skip(f"native backend not built: {exc}")
    if not hasattr(os, "pidfd_open"):
        pytest.skip("needs os.pidfd_open (Linux 5.3+)")


@pytest.mark.parametrize("mode", ["exit", "close", "use", "multiprocessing"])
def test_forked_child_exits_cleanly(redis_options: ConnectionOptions, mode: str) -> None:
    """(a) the child exits via sys.exit(0) without touching the connector; (b) it calls
    close() (twice), which gives back its inherited descriptors; (c) it uses the
    connector: every method raises ForkedError at once; (d) a multiprocessing "fork"
    child that never touches it. Each child exits 0, and the parent's connector, with a
    batch in flight across the fork, carries on."""
    args = [redis_options.host, str(redis_options.port), mode, str(CHILD_TIMEOUT)]
    verdict = fork_verdict(_SCRIPT, args, SCRIPT_TIMEOUT)
    assert verdict["in_flight_ok"] is True
