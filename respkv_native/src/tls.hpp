// TLS for the native connection (OpenSSL), the C++ twin of respkv/_admin.py's
// make_ssl_context / wrap_socket.
//
// One TlsContext per engine, made on the first connect and shared by every worker and
// every reconnect (SSL_CTX is safe to share once configured; each connection gets its
// own SSL session from it), so the CA file is read once, not on every reconnect.
//
// The policy is Python's (respkv/_tls.py `tls_policy`), passed in at construction, never
// decided here: the oldest protocol version allowed (`min_version`, the wire number that
// OpenSSL's TLS1_2_VERSION also is), whether the peer certificate is verified against
// `ca_file` (or the system store) and whether its name is checked against
// `server_hostname` (or the host; an IP address is checked as an IP). A client
// certificate (`cert_file`, `key_file`) is sent when given. SNI carries the name when it
// is not an IP address.
//
// Everything here is non-blocking: each call does one step and says whether it needs the
// socket readable (WantRead) or writable (WantWrite); the caller polls. Payloads are
// encrypted from and decrypted into the caller's buffers (SSL_write/SSL_read), so the
// zero-copy paths of connection.cpp stay zero-copy in user space.
//
// Failures are data (TlsError): an errno when a system call failed, and OpenSSL's own
// reason as `detail` (library text, shown as is). What they mean in words (a plaintext
// port, a server closing the handshake) is written once, in respkv/_failure.py.
//
// Built without OpenSSL (no libssl-dev at build time), `tls_available()` is false and
// creating a context fails with NO_OPENSSL; respkv then reports SUPPORTS_TLS = False,
// never asks for TLS here, and says why in Python (respkv/_tls.py NO_TLS_MESSAGE).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

struct ssl_st;      // OpenSSL's SSL, kept out of this header
struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace respkv {

struct TlsSettings {
  std::optional<std::string> ca_file;
  std::optional<std::string> cert_file;
  std::optional<std::string> key_file;
  std::optional<std::string> server_hostname;
  // The policy (from Python's TlsPolicy; every field is required by the binding).
  int min_version = 0;          // oldest protocol version, as its wire number (0x0303)
  bool verify_peer = true;      // verify the chain against ca_file / the system store
  bool check_hostname = true;   // the certificate must name the server
};

// The failure detail of every TLS step in a build without OpenSSL (unreachable from
// respkv, which checks SUPPORTS_TLS first).
inline constexpr const char* NO_OPENSSL = "built without OpenSSL";

// Why a TLS step failed: an errno (0 if none) and the library's reason.
struct TlsError {
  int err = 0;
  std::string detail;
};

// True when this build has OpenSSL.
bool tls_available();

struct SslFree {
  void operator()(ssl_st* ssl) const noexcept;
};
using SslPtr = std::unique_ptr<ssl_st, SslFree>;

class TlsContext {
 public:
  // A configured context, or null with *error set (a missing CA file, a bad key ...).
  static std::shared_ptr<TlsContext> create(const TlsSettings& settings, TlsError* error);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A client session over the connected socket `fd`, ready for tls_connect(); null with
  // *error set when it cannot be made.
  SslPtr session(int fd, const std::string& host, TlsError* error) const;

 private:
  TlsContext(ssl_ctx_st* ctx, TlsSettings settings) : ctx_(ctx), settings_(std::move(settings)) {}
  ssl_ctx_st* ctx_;
  TlsSettings settings_;
};

enum class TlsIo : std::uint8_t { Ok, WantRead, WantWrite, Closed, Error };

// One step of the handshake: Ok when it is complete.
TlsIo tls_connect(ssl_st* ssl, TlsError* error);
// Write up to n bytes (*done gets the count on Ok).
TlsIo tls_write(ssl_st* ssl, const void* data, std::size_t n, std::size_t* done, TlsError* error);
// Read up to n bytes (*done gets the count on Ok); Closed on an orderly shutdown.
TlsIo tls_read(ssl_st* ssl, void* data, std::size_t n, std::size_t* done, TlsError* error);
// Decrypted bytes waiting inside the session (the socket may not be readable for them).
bool tls_pending(ssl_st* ssl);

// The first bytes the peer sent, as OpenSSL read them: a handshake that failed on an
// answer that is no TLS record (a plaintext server) can quote it. `watch` starts
// recording into *out (which must outlive the watch); `unwatch` stops (call it before
// *out goes, and once the handshake is over, so reads pay nothing for it).
struct TlsFirstBytes {
  std::string bytes;
};
void tls_watch_first_bytes(ssl_st* ssl, TlsFirstBytes* out);
void tls_unwatch_first_bytes(ssl_st* ssl);

}  // namespace respkv
