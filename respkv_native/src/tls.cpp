// TLS over OpenSSL; see tls.hpp.
#include "tls.hpp"

#include <cerrno>
#include <climits>
#include <cstring>

#include "connection.hpp"  // errno_text

#ifdef RESPKV_HAVE_OPENSSL
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

namespace respkv {

#ifdef RESPKV_HAVE_OPENSSL

namespace {

struct CtxFree {
  void operator()(SSL_CTX* ctx) const noexcept { SSL_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

// The text of the newest OpenSSL error on this thread, like Python's "[SSL] reason".
std::string openssl_error(const char* fallback) {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return fallback;
  const char* reason = ERR_reason_error_string(code);
  return std::string("[SSL] ") + (reason ? reason : fallback);
}

bool is_ip_literal(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

// Map the result of an SSL_* call that returned `rc` to a TlsIo, filling *reason.
TlsIo classify(ssl_st* ssl, int rc, std::string* reason) {
  int err = SSL_get_error(ssl, rc);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      return TlsIo::WantRead;
    case SSL_ERROR_WANT_WRITE:
      return TlsIo::WantWrite;
    case SSL_ERROR_ZERO_RETURN:
      return TlsIo::Closed;
    case SSL_ERROR_SYSCALL: {
      int e = errno;
      if (ERR_peek_last_error() != 0) {
        *reason = openssl_error("TLS failure");
        return TlsIo::Error;
      }
      if (e == 0) return TlsIo::Closed;  // EOF without close_notify
      *reason = errno_text(e);
      return TlsIo::Error;
    }
    default: {
      long verify = SSL_get_verify_result(ssl);
      if (verify != X509_V_OK) {
        ERR_clear_error();
        *reason = std::string("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ") +
                  X509_verify_cert_error_string(verify);
      } else {
        *reason = openssl_error("TLS failure");
      }
      return TlsIo::Error;
    }
  }
}

int clamp_len(std::size_t n) { return n > INT_MAX ? INT_MAX : static_cast<int>(n); }

}  // namespace

bool tls_available() { return true; }

void SslFree::operator()(ssl_st* ssl) const noexcept { SSL_free(ssl); }

SslPtr tls_session(int fd, const TlsSettings& s, const std::string& host, std::string* reason) {
  ERR_clear_error();
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    *reason = openssl_error("cannot create a TLS context");
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (s.verify) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    int ok = s.ca_file ? SSL_CTX_load_verify_locations(ctx.get(), s.ca_file->c_str(), nullptr)
                       : SSL_CTX_set_default_verify_paths(ctx.get());
    if (ok != 1) {
      *reason = s.ca_file ? "cannot load ca_file " + *s.ca_file + ": " + openssl_error("bad file")
                          : openssl_error("cannot load the default CA store");
      return nullptr;
    }
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  if (s.cert_file) {
    const std::string& key = s.key_file ? *s.key_file : *s.cert_file;
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), s.cert_file->c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1) {
      *reason = "cannot load cert_file/key_file: " + openssl_error("bad certificate or key");
      return nullptr;
    }
  }
  SslPtr ssl(SSL_new(ctx.get()));  // holds its own reference to the context
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1) {
    *reason = openssl_error("cannot create a TLS session");
    return nullptr;
  }
  const std::string name = s.server_hostname ? *s.server_hostname : host;
  const bool ip = is_ip_literal(name);
  if (!ip) SSL_set_tlsext_host_name(ssl.get(), name.c_str());
  if (s.verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
    if (ok != 1) {
      *reason = openssl_error("cannot set the name to verify");
      return nullptr;
    }
  }
  return ssl;
}

TlsIo tls_connect(ssl_st* ssl, std::string* reason) {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_connect(ssl);
  return rc == 1 ? TlsIo::Ok : classify(ssl, rc, reason);
}

TlsIo tls_write(ssl_st* ssl, const void* data, std::size_t n, std::size_t* done,
                std::string* reason) {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_write(ssl, data, clamp_len(n));
  if (rc > 0) {
    *done = static_cast<std::size_t>(rc);
    return TlsIo::Ok;
  }
  return classify(ssl, rc, reason);
}

TlsIo tls_read(ssl_st* ssl, void* data, std::size_t n, std::size_t* done, std::string* reason) {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_read(ssl, data, clamp_len(n));
  if (rc > 0) {
    *done = static_cast<std::size_t>(rc);
    return TlsIo::Ok;
  }
  return classify(ssl, rc, reason);
}

bool tls_pending(ssl_st* ssl) { return SSL_pending(ssl) > 0; }

#else  // no OpenSSL at build time

bool tls_available() { return false; }

void SslFree::operator()(ssl_st*) const noexcept {}

SslPtr tls_session(int, const TlsSettings&, const std::string&, std::string* reason) {
  *reason = "this build of respkv_native has no TLS (OpenSSL was not found)";
  return nullptr;
}

TlsIo tls_connect(ssl_st*, std::string* reason) {
  *reason = "no TLS in this build";
  return TlsIo::Error;
}

TlsIo tls_write(ssl_st*, const void*, std::size_t, std::size_t*, std::string* reason) {
  *reason = "no TLS in this build";
  return TlsIo::Error;
}

TlsIo tls_read(ssl_st*, void*, std::size_t, std::size_t*, std::string* reason) {
  *reason = "no TLS in this build";
  return TlsIo::Error;
}

bool tls_pending(ssl_st*) { return false; }

#endif

}  // namespace respkv
