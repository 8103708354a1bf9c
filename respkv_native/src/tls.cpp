// TLS over OpenSSL; see tls.hpp.
#include "tls.hpp"

#include <cerrno>
#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>

#include <unistd.h>

#ifdef RESPKV_HAVE_OPENSSL
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

namespace respkv {

#ifdef RESPKV_HAVE_OPENSSL

namespace {

// OpenSSL's reason for the newest error on this thread (its own words), or `fallback`.
std::string openssl_reason(const char* fallback) {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return fallback;
  const char* reason = ERR_reason_error_string(code);
  return reason ? reason : fallback;
}

bool is_ip_literal(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

// Map the result of an SSL_* call that returned `rc` to a TlsIo, filling *error.
TlsIo classify(ssl_st* ssl, int rc, TlsError* error) {
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
        error->detail = openssl_reason("TLS failure");
        return TlsIo::Error;
      }
      if (e == 0) return TlsIo::Closed;  // EOF without close_notify
      error->err = e;
      return TlsIo::Error;
    }
    default: {
      long verify = SSL_get_verify_result(ssl);
      if (verify != X509_V_OK) {
        ERR_clear_error();
        error->detail = std::string("certificate verify failed: ") +
                        X509_verify_cert_error_string(verify);
      } else {
        error->detail = openssl_reason("TLS failure");
      }
      return TlsIo::Error;
    }
  }
}

int clamp_len(std::size_t n) { return n > INT_MAX ? INT_MAX : static_cast<int>(n); }

// errno of a failed file load, when the file is not there or not readable.
int file_errno(const std::string& path) {
  return ::access(path.c_str(), R_OK) == 0 ? 0 : errno;
}

}  // namespace

bool tls_available() { return true; }

void SslFree::operator()(ssl_st* ssl) const noexcept { SSL_free(ssl); }

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::shared_ptr<TlsContext> TlsContext::create(const TlsSettings& s, TlsError* error) {
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_client_method());
  if (raw == nullptr) {
    error->detail = openssl_reason("cannot create a TLS context");
    return nullptr;
  }
  std::shared_ptr<TlsContext> ctx(new TlsContext(raw, s));
  if (SSL_CTX_set_min_proto_version(raw, s.min_version) != 1) {
    error->detail = openssl_reason("unsupported minimum TLS version");
    return nullptr;
  }
  SSL_CTX_set_mode(raw, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (s.verify_peer) {
    SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nullptr);
    int ok = s.ca_file ? SSL_CTX_load_verify_locations(raw, s.ca_file->c_str(), nullptr)
                       : SSL_CTX_set_default_verify_paths(raw);
    if (ok != 1) {
      error->err = s.ca_file ? file_errno(*s.ca_file) : 0;
      error->detail = (s.ca_file ? "cannot load ca_file " + *s.ca_file + ": "
                                 : std::string("cannot load the default CA store: ")) +
                      openssl_reason("bad file");
      return nullptr;
    }
  } else {
    SSL_CTX_set_verify(raw, SSL_VERIFY_NONE, nullptr);
  }
  if (s.cert_file) {
    const std::string& key = s.key_file ? *s.key_file : *s.cert_file;
    if (SSL_CTX_use_certificate_chain_file(raw, s.cert_file->c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(raw, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(raw) != 1) {
      error->err = file_errno(*s.cert_file);
      if (error->err == 0) error->err = file_errno(key);
      error->detail = "cannot load cert_file/key_file: " + openssl_reason("bad certificate or key");
      return nullptr;
    }
  }
  return ctx;
}

SslPtr TlsContext::session(int fd, const std::string& host, TlsError* error) const {
  ERR_clear_error();
  SslPtr ssl(SSL_new(ctx_));  // holds its own reference to the context
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1) {
    error->detail = openssl_reason("cannot create a TLS session");
    return nullptr;
  }
  const std::string name = settings_.server_hostname ? *settings_.server_hostname : host;
  const bool ip = is_ip_literal(name);
  if (!ip) SSL_set_tlsext_host_name(ssl.get(), name.c_str());
  if (settings_.check_hostname) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
    if (ok != 1) {
      error->detail = openssl_reason("cannot set the name to verify");
      return nullptr;
    }
  }
  return ssl;
}

TlsIo tls_connect(ssl_st* ssl, TlsError* error) {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_connect(ssl);
  return rc == 1 ? TlsIo::Ok : classify(ssl, rc, error);
}

TlsIo tls_write(ssl_st* ssl, const void* data, std::size_t n, std::size_t* done, TlsError* error) {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_write(ssl, data, clamp_len(n));
  if (rc > 0) {
    *done = static_cast<std::size_t>(rc);
    return TlsIo::Ok;
  }
  return classify(ssl, rc, error);
}

TlsIo tls_read(ssl_st* ssl, void* data, std::size_t n, std::size_t* done, TlsError* error) {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_read(ssl, data, clamp_len(n));
  if (rc > 0) {
    *done = static_cast<std::size_t>(rc);
    return TlsIo::Ok;
  }
  return classify(ssl, rc, error);
}

bool tls_pending(ssl_st* ssl) { return SSL_pending(ssl) > 0; }

namespace {

// Bytes of the peer's first answer kept (enough for "-ERR unknown command").
constexpr std::size_t FIRST_BYTES = 48;

long record_first_bytes(BIO* bio, int oper, const char* argp, std::size_t, int, long, int ret,
                        std::size_t* processed) {
  if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed != nullptr) {
    auto* out = reinterpret_cast<TlsFirstBytes*>(BIO_get_callback_arg(bio));
    if (out != nullptr && out->bytes.size() < FIRST_BYTES) {
      out->bytes.append(argp, std::min(*processed, FIRST_BYTES - out->bytes.size()));
    }
  }
  return ret;
}

}  // namespace

void tls_watch_first_bytes(ssl_st* ssl, TlsFirstBytes* out) {
  BIO* bio = SSL_get_rbio(ssl);
  BIO_set_callback_arg(bio, reinterpret_cast<char*>(out));
  BIO_set_callback_ex(bio, record_first_bytes);
}

void tls_unwatch_first_bytes(ssl_st* ssl) {
  BIO* bio = SSL_get_rbio(ssl);
  BIO_set_callback_ex(bio, nullptr);
  BIO_set_callback_arg(bio, nullptr);
}

#else  // no OpenSSL at build time

bool tls_available() { return false; }

void SslFree::operator()(ssl_st*) const noexcept {}

TlsContext::~TlsContext() = default;

std::shared_ptr<TlsContext> TlsContext::create(const TlsSettings&, TlsError* error) {
  error->detail = NO_OPENSSL;
  return nullptr;
}

SslPtr TlsContext::session(int, const std::string&, TlsError* error) const {
  error->detail = NO_OPENSSL;
  return nullptr;
}

TlsIo tls_connect(ssl_st*, TlsError* error) {
  error->detail = NO_OPENSSL;
  return TlsIo::Error;
}

TlsIo tls_write(ssl_st*, const void*, std::size_t, std::size_t*, TlsError* error) {
  error->detail = NO_OPENSSL;
  return TlsIo::Error;
}

TlsIo tls_read(ssl_st*, void*, std::size_t, std::size_t*, TlsError* error) {
  error->detail = NO_OPENSSL;
  return TlsIo::Error;
}

bool tls_pending(ssl_st*) { return false; }

void tls_watch_first_bytes(ssl_st*, TlsFirstBytes*) {}

void tls_unwatch_first_bytes(ssl_st*) {}

#endif

}  // namespace respkv
