"""TLS policy, written once for every connection respkv makes.

What it owns: which protocol versions are allowed, whether the server's certificate is
verified and its name checked (:func:`tls_policy`), the client context the Python side
builds from that policy (:func:`make_ssl_context`: the pure engine, the admin
connection, the cluster links), and the one message for a native build without TLS
(:data:`NO_TLS_MESSAGE`).

The native engine has no policy of its own: :func:`respkv._native.engine_config` passes
the numbers of :class:`TlsPolicy` to its OpenSSL context at construction
(``respkv_native/src/tls.cpp`` applies them), and a test compares what the engine runs
with against the context made here. Everything else (cipher lists, curves, session
tickets) is each TLS library's own default.

The policy, and where it comes from: TLS 1.2 or newer (``ssl.create_default_context``'s
minimum since Python 3.10; TLS 1.0/1.1 are deprecated by RFC 8996); the peer's chain
verified against ``ca_file`` (or the system store) and its name checked against
``server_hostname`` (or the host: an IP address is checked as an IP, and sent in no SNI),
both off only when ``verify`` is false (for tests against self-made certificates).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Final

from respkv._options import TLSOptions

__all__ = [
    "NO_TLS_MESSAGE",
    "NO_TLS_REASON",
    "TLS_MIN_VERSION",
    "TlsPolicy",
    "make_ssl_context",
    "ssl_reason",
    "tls_policy",
]

#: The oldest protocol version a connection may use (RFC 8996 deprecates 1.0 and 1.1).
#: Its value is the TLS wire version (0x0303), which is also OpenSSL's ``TLS1_2_VERSION``.
TLS_MIN_VERSION: Final = ssl.TLSVersion.TLSv1_2

#: Why a native build cannot run a ``resps://`` connection (also ``auto``'s reason).
NO_TLS_REASON: Final = (
    "this build of respkv_native has no TLS (SUPPORTS_TLS is False: OpenSSL's headers "
    "were not found when it was built)"
)
#: The ConfigError for TLS options on a native build without TLS, with the way out.
NO_TLS_MESSAGE: Final = (
    f"{NO_TLS_REASON}; use RESPKV_BACKEND=python or auto for resps:// connections, "
    "or rebuild with libssl-dev installed"
)

# "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ... (_ssl.c:1006)": the
# library's code in brackets and CPython's source position around OpenSSL's words.
_SSL_DECORATION: Final = re.compile(r"^\[[A-Z0-9_]+: [A-Z0-9_]+\] | \(_ssl\.c:\d+\)$")


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """What a TLS connection for some :class:`~respkv.TLSOptions` must enforce."""

    #: The oldest protocol version allowed, as its wire number (0x0303: TLS 1.2).
    min_version: int
    #: The server's certificate chain must verify against the CA (else: not checked).
    verify_peer: bool
    #: The certificate must name the server (``server_hostname`` or the host).
    check_hostname: bool


def tls_policy(tls: TLSOptions) -> TlsPolicy:
    """The policy for ``tls`` (see the module essay)."""
    return TlsPolicy(
        min_version=int(TLS_MIN_VERSION), verify_peer=tls.verify, check_hostname=tls.verify
    )


def make_ssl_context(tls: TLSOptions) -> ssl.SSLContext:
    """A client TLS context for ``tls``: :func:`tls_policy`, the CA file (or the system
    store) and the client certificate."""
    policy = tls_policy(tls)
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    ctx.minimum_version = ssl.TLSVersion(policy.min_version)
    ctx.check_hostname = policy.check_hostname  # before verify_mode: CERT_NONE needs it off
    ctx.verify_mode = ssl.CERT_REQUIRED if policy.verify_peer else ssl.CERT_NONE
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


def ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's own words for ``exc`` ("certificate verify failed: self-signed
    certificate in certificate chain"), as the native engine reports them: without
    CPython's ``[SSL: CODE]`` prefix and ``(_ssl.c:N)`` suffix."""
    text = exc.strerror if isinstance(exc.strerror, str) else str(exc)
    return _SSL_DECORATION.sub("", text) or exc.reason or type(exc).__name__
