"""The connector contract: both backends satisfy the ``Connector`` Protocol.

Two kinds of check, because a ``runtime_checkable`` Protocol only looks at method
*names*:

* static: mypy (``--strict``, ``warn_unused_ignores``) checks the assignments of a
  ``PyConnector`` and a ``NativeConnector`` to ``Connector``-typed variables below, so
  a changed signature in either backend fails type checking. The two deliberately
  wrong classes carry ``# type: ignore[assignment]``: if they ever became acceptable,
  that ignore would be unused and mypy would report it;
* at run time: ``isinstance`` with the Protocol, and parameter names compared with the
  Protocol's, for every connector implementation the suite knows (``py``, and
  ``native`` when it loads).

The records of the contract (statuses, ops, completions, batch results) are pinned
here too: their numeric values are shared with the native module.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Sequence
from typing import Any, Final

import pytest

from respkv import (
    CONTRACT_VERSION,
    BatchResult,
    Completion,
    ConnectionOptions,
    Connector,
    KeyStatus,
    Op,
)
from respkv._compat import BufferLike
from respkv._contract import (
    FAILURE_STATUSES,
    STATUS_OF_KIND,
    ErrorKind,
    Failure,
    KeyLike,
    make_completion,
)
from respkv._pyengine import PyConnector
from respkv.testing import ConnectorFactory

#: The methods of the contract, in the order docs/contract.md lists them.
CONTRACT_METHODS: Final = (
    "event_fd",
    "submit_batch_set",
    "submit_batch_get",
    "submit_batch_exists",
    "submit_batch_delete",
    "cancel",
    "drain_completions",
    "close",
)

# --------------------------------------------------------------------- static part


def py_as_connector(options: ConnectionOptions) -> Connector:
    """mypy: ``PyConnector`` is a ``Connector``."""
    conn: Connector = PyConnector(options)
    return conn


def native_as_connector(options: ConnectionOptions) -> Connector:
    """mypy: ``NativeConnector`` is a ``Connector`` (ImportError at run time if unbuilt)."""
    from respkv._native import NativeConnector

    conn: Connector = NativeConnector(options)
    return conn


class MinimalConnector:
    """The smallest class that satisfies the Protocol: what a third party must define."""

    def event_fd(self) -> int:
        return -1

    def submit_batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> int:
        return 1

    def submit_batch_get(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> int:
        return 2

    def submit_batch_exists(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        return 3

    def submit_batch_delete(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        return 4

    def cancel(self, batch_id: int) -> bool:
        return False

    def drain_completions(self) -> list[Completion]:
        return []

    def close(self) -> None:
        return None


class MissingClose:
    """Everything but ``close``: neither mypy nor ``isinstance`` accepts it."""

    def event_fd(self) -> int:
        return -1

    def submit_batch_set(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
        ttl: float | None = None,
    ) -> int:
        return 1

    def submit_batch_get(
        self,
        keys: Sequence[KeyLike],
        buffers: Sequence[BufferLike],
        *,
        timeout: float | None = None,
    ) -> int:
        return 2

    def submit_batch_exists(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        return 3

    def submit_batch_delete(self, keys: Sequence[KeyLike], *, timeout: float | None = None) -> int:
        return 4

    def cancel(self, batch_id: int) -> bool:
        return False

    def drain_completions(self) -> list[Completion]:
        return []


class WrongReturn(MinimalConnector):
    """All names present but a wrong return type: mypy rejects it, ``isinstance`` cannot."""

    def submit_batch_exists(  # type: ignore[override]
        self, keys: Sequence[KeyLike], *, timeout: float | None = None
    ) -> str:
        return "three"


def static_examples() -> list[Any]:
    good: Connector = MinimalConnector()
    missing: Connector = MissingClose()  # type: ignore[assignment]
    wrong: Connector = WrongReturn()  # type: ignore[assignment]
    return [good, missing, wrong]


# -------------------------------------------------------------------- runtime part


def test_minimal_and_broken_classes_at_run_time() -> None:
    good, missing, wrong = static_examples()
    assert isinstance(good, Connector)
    assert not isinstance(missing, Connector)
    # runtime_checkable sees only names: this one passes isinstance, which is why the
    # static assignments above matter.
    assert isinstance(wrong, Connector)


def test_py_connector_satisfies_the_protocol(redis_options: ConnectionOptions) -> None:
    conn = py_as_connector(redis_options)
    try:
        assert isinstance(conn, Connector)
        assert type(conn).__name__ == "PyConnector"
    finally:
        conn.close()


def test_native_connector_satisfies_the_protocol(redis_options: ConnectionOptions) -> None:
    try:
        conn = native_as_connector(redis_options)
    except ImportError as exc:
        _skip_unless_native_required(exc)
        return
    try:
        assert isinstance(conn, Connector)
        assert type(conn).__name__ == "NativeConnector"
    finally:
        conn.close()


def protocol_parameters(name: str) -> list[str]:
    return list(inspect.signature(getattr(Connector, name)).parameters)[1:]


def test_every_implementation_has_the_protocols_parameter_names(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    conn = connector_factory(redis_options)
    try:
        assert isinstance(conn, Connector)
        for name in CONTRACT_METHODS:
            method = getattr(conn, name)
            assert callable(method), name
            assert list(inspect.signature(method).parameters) == protocol_parameters(name), name
    finally:
        conn.close()


def test_protocol_lists_exactly_the_contract_methods() -> None:
    members = {
        name
        for name, value in vars(Connector).items()
        if callable(value) and not name.startswith("_")
    }
    assert members == set(CONTRACT_METHODS)


def test_close_is_idempotent_and_event_fd_is_a_descriptor(
    connector_factory: ConnectorFactory, redis_options: ConnectionOptions
) -> None:
    conn = connector_factory(redis_options)
    fd = conn.event_fd()
    assert isinstance(fd, int) and fd >= 0
    assert conn.drain_completions() == []
    conn.close()
    conn.close()


# ------------------------------------------------------------------------ records


def test_contract_version_is_a_positive_int() -> None:
    assert isinstance(CONTRACT_VERSION, int) and CONTRACT_VERSION >= 1


def _skip_unless_native_required(exc: ImportError) -> None:
    # CI sets RESPKV_REQUIRE_NATIVE=1: there a missing native build is a failure.
    if os.environ.get("RESPKV_REQUIRE_NATIVE") == "1":
        raise exc
    pytest.skip(f"native backend not built: {exc}")


def test_native_core_reports_the_same_contract_version() -> None:
    from respkv._backend import load_native

    try:
        core = load_native()
    except ImportError as exc:
        _skip_unless_native_required(exc)
        return
    assert core.CONTRACT_VERSION == CONTRACT_VERSION


def test_status_and_op_values_are_fixed() -> None:
    # Shared with the native module by number: changing one needs a CONTRACT_VERSION bump.
    assert {s.name: s.value for s in KeyStatus} == {
        "OK": 0,
        "MISS": 1,
        "SIZE_MISMATCH": 2,
        "SERVER_ERROR": 3,
        "IO_ERROR": 4,
        "TIMEOUT": 5,
        "CANCELLED": 6,
        "PROTOCOL_ERROR": 7,
    }
    assert {o.name: o.value for o in Op} == {"SET": 0, "GET": 1, "EXISTS": 2, "DELETE": 3}


def test_miss_is_an_answer_not_a_failure() -> None:
    assert set(KeyStatus) - FAILURE_STATUSES == {KeyStatus.OK, KeyStatus.MISS}


def test_completion_of_a_clean_batch() -> None:
    c = make_completion(7, Op.GET, [KeyStatus.OK, KeyStatus.MISS, KeyStatus.OK])
    assert c == Completion(
        7, Op.GET, True, (KeyStatus.OK, KeyStatus.MISS, KeyStatus.OK), (None,) * 3
    )
    assert c.hits == 2 and c.error is None and c.errors == (None,) * 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.ok = False  # type: ignore[misc]


def test_completion_error_names_the_count_and_first_failure() -> None:
    statuses = [KeyStatus.OK, KeyStatus.MISS, KeyStatus.OK, KeyStatus.OK]
    mismatch = Failure(ErrorKind.SIZE_MISMATCH, expected=4, actual=5)
    late = Failure(ErrorKind.TIMED_OUT, address="h:1", timeout=0.5, in_flight=True)
    c = make_completion(3, Op.GET, statuses, [None, None, mismatch, late])
    assert not c.ok
    # The status of a failed key follows from its kind, whatever the engine wrote.
    assert c.statuses[2:] == (KeyStatus.SIZE_MISMATCH, KeyStatus.TIMEOUT)
    assert c.error == (
        "2 of 4 keys failed; key 2: SIZE_MISMATCH: value is 5 bytes, buffer is 4 bytes"
    )
    assert c.errors[3] == "no reply from h:1 within op_timeout (0.5 s)"


def test_every_kind_maps_to_a_failure_status_and_formats() -> None:
    assert set(STATUS_OF_KIND) == set(ErrorKind)
    for kind in ErrorKind:
        f = Failure(kind, address="127.0.0.1:1", errno=111, reply="ERR x", detail="d")
        assert f.status in FAILURE_STATUSES
        assert f.message and str(f) == f.message, kind


def test_failure_code_is_the_servers_first_word() -> None:
    moved = Failure(ErrorKind.SERVER_ERROR, reply="MOVED 3999 127.0.0.1:7002")
    assert moved.code == "MOVED" and moved.message == "MOVED 3999 127.0.0.1:7002"
    assert Failure(ErrorKind.CONNECTION_LOST, reply="MOVED 1 x:1").code == ""
    assert Failure(ErrorKind.HANDSHAKE_FAILED, reply="WRONGPASS bad", detail="AUTH").code == (
        "WRONGPASS"
    )


def test_outcome_unknown_only_for_keys_in_flight() -> None:
    assert Failure(ErrorKind.CONNECTION_LOST, in_flight=True).outcome_unknown
    assert not Failure(ErrorKind.CONNECTION_LOST, in_flight=False).outcome_unknown
    assert not Failure(ErrorKind.CONNECT_FAILED).outcome_unknown
    # A server error is an answer: the command was not applied.
    assert not Failure(ErrorKind.SERVER_ERROR, reply="OOM", in_flight=True).outcome_unknown


def test_connection_errors_name_the_errno() -> None:
    f = Failure(ErrorKind.CONNECT_FAILED, address="127.0.0.1:9", errno=111)
    assert f.message.startswith("connect to 127.0.0.1:9 failed: [Errno 111] ")
    assert "ECONNREFUSED" in f.message


def test_make_completion_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="1 failures for 2 statuses"):
        make_completion(1, Op.SET, [KeyStatus.OK, KeyStatus.OK], [None])


def test_batch_result_from_completion() -> None:
    c = make_completion(
        9,
        Op.EXISTS,
        [KeyStatus.OK, KeyStatus.MISS, KeyStatus.OK],
        [None, None, Failure(ErrorKind.CONNECTION_LOST, address="h:1", errno=104)],
    )
    result = BatchResult.from_completion([b"a", b"b", b"c"], c)
    assert len(result) == 3
    assert result.keys == (b"a", b"b", b"c")
    assert result.hits == [True, False, False]
    assert result.failed == [2]
    assert result.ok is False and result.error == c.error
