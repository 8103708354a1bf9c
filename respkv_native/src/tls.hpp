// TLS for the native connection (OpenSSL), the C++ twin of respkv/_admin.py's
// make_ssl_context / wrap_socket.
//
// The context is configured like Python's `ssl.create_default_context(cafile=...)`: TLS
// 1.2 or newer, the peer certificate verified against `ca_file` (or the system store)
// and its name checked against `server_hostname` (or the host; an IP address is checked
// as an IP), unless `verify` is false, which turns both checks off. A client certificate
// (`cert_file`, `key_file`) is sent when given. SNI carries the name when it is not an
// IP address.
//
// Everything here is non-blocking: each call does one step and says whether it needs the
// socket readable (WantRead) or writable (WantWrite); the caller polls. Payloads are
// encrypted from and decrypted into the caller's buffers (SSL_write/SSL_read), so the
// zero-copy paths of connection.cpp stay zero-copy in user space.
//
// Built without OpenSSL (no libssl-dev at build time), `tls_available()` is false and
// `tls_session` fails with a message; respkv then reports SUPPORTS_TLS = False and picks
// the pure engine for resps:// connections.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

struct ssl_st;  // OpenSSL's SSL, kept out of this header

namespace respkv {

struct TlsSettings {
  std::optional<std::string> ca_file;
  std::optional<std::string> cert_file;
  std::optional<std::string> key_file;
  std::optional<std::string> server_hostname;
  bool verify = true;
};

// True when this build has OpenSSL.
bool tls_available();

struct SslFree {
  void operator()(ssl_st* ssl) const noexcept;
};
using SslPtr = std::unique_ptr<ssl_st, SslFree>;

// A client session over the connected socket `fd`, ready for tls_connect(). Null (and
// *reason set) when the context cannot be made (a missing CA file, a bad key ...).
SslPtr tls_session(int fd, const TlsSettings& settings, const std::string& host,
                   std::string* reason);

enum class TlsIo : std::uint8_t { Ok, WantRead, WantWrite, Closed, Error };

// One step of the handshake: Ok when it is complete.
TlsIo tls_connect(ssl_st* ssl, std::string* reason);
// Write up to n bytes (*done gets the count on Ok).
TlsIo tls_write(ssl_st* ssl, const void* data, std::size_t n, std::size_t* done,
                std::string* reason);
// Read up to n bytes (*done gets the count on Ok); Closed on an orderly shutdown.
TlsIo tls_read(ssl_st* ssl, void* data, std::size_t n, std::size_t* done, std::string* reason);
// Decrypted bytes waiting inside the session (the socket may not be readable for them).
bool tls_pending(ssl_st* ssl);

}  // namespace respkv
