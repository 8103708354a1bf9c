"""Shared policy has one source, and every layer reads it from there.

* The connect handshake's "required" rule (an error reply to AUTH or SELECT fails a
  connect, one to CLIENT SETNAME does not) is :func:`respkv._admin.handshake_required`:
  the engines, the cluster links and the admin connection itself follow it.
* Shared sizes and limits live in :mod:`respkv._limits` (which imports nothing from
  respkv): the codec re-exports the parser limits, and the engines import the module,
  never each other.
* TLS policy and the one "no TLS" message live in :mod:`respkv._tls` (the native side
  of the comparison is ``tests/test_native_engine.py``).
"""

from __future__ import annotations

import ast
import errno
from pathlib import Path
from typing import Any

import pytest

import respkv
from respkv import ConnectionOptions, ErrorKind, Failure, _limits, resp2
from respkv._admin import (
    REQUIRED_HANDSHAKE,
    AdminConnection,
    handshake_commands,
    handshake_required,
)
from respkv._tls import NO_TLS_MESSAGE, NO_TLS_REASON, TLS_MIN_VERSION, tls_policy
from respkv.errors import ReplyError
from respkv.testing.servers import LocalServer

PACKAGE = Path(respkv.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from a import b`` gives ``a``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_handshake_rule() -> None:
    opts = ConnectionOptions(password="pw", username="u", db=2, client_name="me")
    cmds = handshake_commands(opts)
    assert [c[0] for c in cmds] == ["AUTH", "SELECT", "CLIENT"]
    assert [handshake_required(c) for c in cmds] == [True, True, False]
    assert frozenset({"AUTH", "SELECT"}) == REQUIRED_HANDSHAKE


def test_admin_connection_follows_the_handshake_rule(auth_server: LocalServer) -> None:
    """Without a password, the server refuses CLIENT SETNAME (NOAUTH): that does not fail
    the admin connect, as it fails no engine connect; the commands after it say why."""
    opts = ConnectionOptions(host=auth_server.host, port=auth_server.port, client_name="adm")
    with AdminConnection(opts, timeout=10) as admin, pytest.raises(ReplyError, match="NOAUTH"):
        admin.command("PING")


def test_limits_module_is_the_one_source() -> None:
    assert not {n for n in _imports(PACKAGE / "_limits.py") if n.startswith("respkv")}
    for name in ("MAX_BULK_BYTES", "MAX_MULTIBULK_LEN", "MAX_DEPTH", "MAX_LINE_BYTES"):
        assert getattr(resp2, name) is getattr(_limits, name)
    assert resp2.REFERENCE_THRESHOLD == _limits.INLINE_VALUE_BYTES


def test_engines_do_not_import_each_other() -> None:
    native = _imports(PACKAGE / "_native.py")
    assert not {n for n in native if n.startswith("respkv._pyengine")}, native
    for path in (PACKAGE / "_pyengine").glob("*.py"):
        assert "respkv._native" not in _imports(path), path


def test_tls_policy_and_message() -> None:
    strict = tls_policy(respkv.TLSOptions())
    assert strict.min_version == TLS_MIN_VERSION.value == 0x0303
    assert strict.verify_peer and strict.check_hostname
    loose = tls_policy(respkv.TLSOptions(verify=False))
    assert not loose.verify_peer and not loose.check_hostname
    assert NO_TLS_MESSAGE.startswith(NO_TLS_REASON)
    assert "RESPKV_BACKEND=python" in NO_TLS_MESSAGE


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"detail": "certificate verify failed: x"}, "failed: certificate verify failed: x"),
        (
            {"reply": "-ERR unknown command", "detail": "wrong version number"},
            'did not answer with TLS (it sent "-ERR unknown command"): wrong version number',
        ),
        ({"errno": errno.ETIMEDOUT}, "TLS handshake within connect_timeout (is the port"),
        ({}, "failed: the server closed the connection during the TLS handshake"),
        ({"errno": errno.ECONNRESET}, "(ECONNRESET): the server closed the connection"),
    ],
    ids=["reason", "plaintext-answer", "timeout", "closed", "reset"],
)
def test_tls_failures_are_worded_once(fields: dict[str, Any], says: str) -> None:
    """Both engines report TLS failures as data; respkv._failure says what they mean."""
    message = Failure(ErrorKind.TLS_FAILED, "h:1", **fields).message
    assert message.startswith("TLS with h:1 failed: ")
    assert says in message, message
    if not fields or fields.get("errno") == errno.ECONNRESET:
        assert "client certificate" in message
