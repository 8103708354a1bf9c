// The one file that includes pybind11: respkv_native._core.
//
// The seam is narrow on purpose. respkv/_native.py validates everything with the shared
// helpers of respkv/_validate.py, passes every option, limit and handshake command in
// from Python when it makes the Engine (so no shared number lives here), and hands over
// byte keys and flat, C-contiguous 'B' memoryviews that it keeps alive until the batch's
// completion is drained. Here, holding the GIL, `submit` copies the keys and takes the
// buffer pointers; then it releases the GIL to tile and queue the batch. `drain` releases
// the GIL while it takes the completion queue, and builds the Python results afterwards:
// per batch its id, op, answer bytes and, only when some key failed, its failure records
// as plain tuples. Python turns those into Failure records and messages; nothing here
// writes a sentence. Worker threads never see a Python object.
//
// The Engine's destructor joins its worker threads, so Python's last reference to it
// drops it with the GIL released (EngineDeleter): a worker is never waited for while it
// could need the GIL-holding thread to make progress, and other Python threads run on.
//
// `tile` and `parse_replies` expose the C++ tiling and codec to the tests, which compare
// them with respkv/_tiling.py and respkv/resp2.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "batch.hpp"
#include "engine.hpp"
#include "resp2.hpp"
#include "tiling.hpp"
#include "tls.hpp"

namespace py = pybind11;
using respkv::Batch;
using respkv::Engine;
using respkv::EngineOptions;
using respkv::Op;

namespace {

// The contract this module implements (the shape of submit/drain/cancel, the values of
// Op, Answer and ErrorKind). respkv._backend refuses a module whose number differs from
// respkv._contract.CONTRACT_VERSION, and tests/test_native_engine.py compares the two.
constexpr int CONTRACT_VERSION = 2;

struct EngineDeleter {
  void operator()(Engine* engine) const {
    if (Py_IsInitialized() && PyGILState_Check()) {
      py::gil_scoped_release nogil;
      delete engine;
    } else {
      delete engine;
    }
  }
};
using EnginePtr = std::unique_ptr<Engine, EngineDeleter>;

// A buffer view that gives the buffer back when it goes out of scope.
class BufferView {
 public:
  BufferView(PyObject* obj, bool writable) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &view_, flags) != 0) throw py::error_already_set();
  }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  ~BufferView() { PyBuffer_Release(&view_); }
  std::uint8_t* data() const { return static_cast<std::uint8_t*>(view_.buf); }
  std::size_t size() const { return static_cast<std::size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

std::uint64_t submit(Engine& engine, int op, const py::list& keys,
                     const std::optional<py::list>& buffers, std::optional<double> timeout,
                     std::uint64_t ttl_ms) {
  if (op < 0 || op > 3) throw py::value_error("op must be 0..3 (respkv.Op)");
  const auto kind = static_cast<Op>(op);
  const bool with_values = kind == Op::Set || kind == Op::Get;
  const std::size_t n = keys.size();
  if (with_values && !buffers) throw py::value_error("SET and GET need buffers");
  if (with_values && buffers->size() != n) throw py::value_error("one buffer per key");
  auto batch = std::make_shared<Batch>(kind, n);
  if (ttl_ms && kind != Op::Set) throw py::value_error("ttl_ms is for SET only");
  batch->ttl_ms = ttl_ms;  // validated by respkv._validate.check_ttl
  std::size_t total = 0;
  for (const py::handle& key : keys) {
    if (!PyBytes_Check(key.ptr())) throw py::type_error("keys must be bytes");
    total += static_cast<std::size_t>(PyBytes_GET_SIZE(key.ptr()));
  }
  batch->key_bytes.reserve(total);
  for (const py::handle& key : keys) {
    batch->key_offsets.push_back(batch->key_bytes.size());
    batch->key_bytes.append(PyBytes_AS_STRING(key.ptr()),
                            static_cast<std::size_t>(PyBytes_GET_SIZE(key.ptr())));
  }
  batch->key_offsets.push_back(batch->key_bytes.size());
  if (with_values) {
    batch->data.reserve(n);
    batch->lengths.reserve(n);
    for (const py::handle& buf : *buffers) {
      // The caller (respkv/_native.py) keeps the memoryview, and so the memory, alive
      // until the completion is drained; the pointer stays valid after release.
      BufferView view(buf.ptr(), kind == Op::Get);
      batch->data.push_back(view.data());
      batch->lengths.push_back(view.size());
    }
  }
  const double seconds = timeout.value_or(0.0);
  py::gil_scoped_release nogil;
  return engine.submit(std::move(batch), seconds);
}

py::str utf8(const std::string& s) {
  PyObject* text = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (text == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(text);
}

py::object failures_of(Batch& b) {
  if (b.failures.empty()) return py::none();
  py::list out;
  for (const respkv::FailureRecord& r : b.failures) {
    const respkv::Failure& f = r.failure;
    out.append(py::make_tuple(r.index, static_cast<int>(f.kind), f.err, f.expected, f.actual,
                              f.timeout, utf8(f.reply), utf8(f.detail), f.in_flight));
  }
  return std::move(out);
}

py::list drain(Engine& engine) {
  std::vector<std::shared_ptr<Batch>> done;
  {
    py::gil_scoped_release nogil;
    done = engine.drain();
  }
  py::list out;
  for (const auto& b : done) {
    py::bytes answers(reinterpret_cast<const char*>(b->answers.data()), b->answers.size());
    out.append(py::make_tuple(b->id, static_cast<int>(b->op), answers, failures_of(*b)));
  }
  return out;
}

respkv::ReaderLimits reader_limits(const py::dict& c) {
  respkv::ReaderLimits l;
  l.max_bulk_bytes = c["max_bulk_bytes"].cast<std::int64_t>();
  l.max_multibulk_len = c["max_multibulk_len"].cast<std::int64_t>();
  l.max_depth = c["max_depth"].cast<std::size_t>();
  l.max_line_bytes = c["max_line_bytes"].cast<std::size_t>();
  return l;
}

std::optional<std::string> optional_str(const py::handle& v) {
  if (v.is_none()) return std::nullopt;
  return v.cast<std::string>();
}

// The Engine from respkv/_native.py's `engine_config(options)` dict (every key required).
EnginePtr make_engine(const py::dict& c) {
  EngineOptions o;
  o.connect.host = c["host"].cast<std::string>();
  o.connect.port = c["port"].cast<int>();
  o.connect.unix_path = optional_str(c["unix_path"]);
  o.connect.connect_timeout = c["connect_timeout"].cast<double>();
  for (const py::handle& cmd : c["handshake"].cast<py::list>()) {
    const auto pair = cmd.cast<py::tuple>();
    respkv::HandshakeCommand hc;
    for (const py::handle& arg : pair[0].cast<py::list>()) hc.args.push_back(arg.cast<std::string>());
    hc.required = pair[1].cast<bool>();
    o.connect.handshake.push_back(std::move(hc));
  }
  if (c["tls"].cast<bool>()) {
    // respkv checks SUPPORTS_TLS first and words the refusal (respkv/_tls.py).
    if (!respkv::tls_available()) throw py::value_error(respkv::NO_OPENSSL);
    respkv::TlsSettings t;
    t.ca_file = optional_str(c["tls_ca_file"]);
    t.cert_file = optional_str(c["tls_cert_file"]);
    t.key_file = optional_str(c["tls_key_file"]);
    t.server_hostname = optional_str(c["tls_server_hostname"]);
    // The policy: respkv/_tls.py tls_policy(), the one source.
    t.min_version = c["tls_min_version"].cast<int>();
    t.verify_peer = c["tls_verify_peer"].cast<bool>();
    t.check_hostname = c["tls_check_hostname"].cast<bool>();
    o.tls = std::move(t);
  }
  o.connection.reader = reader_limits(c);
  o.connection.max_iov = c["max_iov"].cast<std::size_t>();
  o.num_workers = c["num_workers"].cast<std::size_t>();
  o.op_timeout = c["op_timeout"].cast<double>();
  o.window_values = c["window_values"].cast<std::size_t>();
  o.window_bytes = c["window_bytes"].cast<std::size_t>();
  o.window_small = c["window_small"].cast<std::size_t>();
  o.large_value_bytes = c["large_value_bytes"].cast<std::size_t>();
  o.header_recv = c["header_recv"].cast<std::size_t>();
  o.inline_value_bytes = c["inline_value_bytes"].cast<std::size_t>();
  o.reconnect_backoff_min = c["reconnect_backoff_min"].cast<double>();
  o.reconnect_backoff_max = c["reconnect_backoff_max"].cast<double>();
  if (c.contains("test_throw_at_reply")) {
    o.test_throw_at_reply = c["test_throw_at_reply"].cast<std::uint64_t>();
  }
  if (c.contains("test_exit_delay")) o.test_exit_delay = c["test_exit_delay"].cast<double>();
  return EnginePtr(new Engine(std::move(o)));
}

// What the engine runs with, read back from the C++ side (the constants test compares
// it with the Python sources).
py::dict engine_config(const Engine& engine) {
  const EngineOptions& o = engine.options();
  py::dict d;
  d["connect_timeout"] = o.connect.connect_timeout;
  d["num_workers"] = o.num_workers;
  d["op_timeout"] = o.op_timeout;
  d["window_values"] = o.window_values;
  d["window_bytes"] = o.window_bytes;
  d["window_small"] = o.window_small;
  d["large_value_bytes"] = o.large_value_bytes;
  d["header_recv"] = o.header_recv;
  d["inline_value_bytes"] = o.inline_value_bytes;
  d["max_iov"] = o.connection.max_iov;
  d["max_bulk_bytes"] = o.connection.reader.max_bulk_bytes;
  d["max_multibulk_len"] = o.connection.reader.max_multibulk_len;
  d["max_depth"] = o.connection.reader.max_depth;
  d["max_line_bytes"] = o.connection.reader.max_line_bytes;
  d["reconnect_backoff_min"] = o.reconnect_backoff_min;
  d["reconnect_backoff_max"] = o.reconnect_backoff_max;
  py::list handshake;
  for (const auto& cmd : o.connect.handshake) {
    py::list args;
    for (const auto& a : cmd.args) args.append(py::bytes(a));
    handshake.append(py::make_tuple(args, cmd.required));
  }
  d["handshake"] = handshake;
  d["tls"] = o.tls.has_value();
  if (o.tls) {
    d["tls_min_version"] = o.tls->min_version;
    d["tls_verify_peer"] = o.tls->verify_peer;
    d["tls_check_hostname"] = o.tls->check_hostname;
  }
  return d;
}

py::object reply_to_python(const respkv::Reply& r) {
  using Kind = respkv::Reply::Kind;
  switch (r.kind) {
    case Kind::Simple:
      return py::make_tuple("simple", py::bytes(r.text));
    case Kind::Error:
      return py::make_tuple("error", py::bytes(r.text));
    case Kind::Integer:
      return py::make_tuple("int", r.integer);
    case Kind::Bulk:
      return py::make_tuple("bulk", py::bytes(r.text));
    case Kind::Nil:
    case Kind::NilArray:
      return py::make_tuple("nil", py::none());
    case Kind::Filled:
      return py::make_tuple("filled", py::none());
    case Kind::SizeMismatch:
      return py::make_tuple("size_mismatch", r.integer);
    case Kind::Array: {
      py::list items;
      for (const auto& item : r.items) items.append(reply_to_python(item));
      return py::make_tuple("array", items);
    }
  }
  return py::none();
}

// Feed `chunks` one by one, collecting replies; a protocol error ends the list with
// ("protocol_error", its fault text). With `target_size`, every reply is parsed with a
// target of that many bytes (bulk payloads of that size land in it, reported as
// "filled"). `limits` has the four reader limits (respkv/resp2.py's).
py::list parse_replies(const std::vector<std::string>& chunks, std::optional<std::size_t> target_size,
                       const py::dict& limits) {
  respkv::Reader reader(reader_limits(limits));
  std::vector<std::uint8_t> target(target_size.value_or(0));
  py::list out;
  respkv::Reply reply;
  for (const auto& chunk : chunks) {
    reader.feed(chunk.data(), chunk.size());
    for (;;) {
      if (target_size) reader.set_target(target.data(), target.size());
      const respkv::ReadStatus got = reader.read(reply);
      if (got == respkv::ReadStatus::Error) {
        out.append(py::make_tuple("protocol_error", respkv::protocol_fault_text(reader.fault())));
        return out;
      }
      if (got == respkv::ReadStatus::NeedData) break;
      out.append(reply_to_python(reply));
    }
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "respkv native engine (use respkv, not this module directly)";
  m.attr("CONTRACT_VERSION") = CONTRACT_VERSION;
  // Whether this build has TLS (OpenSSL); respkv._backend reads it to choose for resps://.
  m.attr("SUPPORTS_TLS") = respkv::tls_available();
  // Native tuning with no Python counterpart (the pure engine sizes its reads itself).
  m.attr("READ_CHUNK") = respkv::READ_CHUNK;

  py::class_<Engine, EnginePtr>(m, "Engine")
      .def(py::init(&make_engine), py::arg("config"))
      .def("event_fd", &Engine::event_fd)
      .def("config", &engine_config)
      .def("submit", &submit, py::arg("op"), py::arg("keys"), py::arg("buffers"),
           py::arg("timeout") = py::none(), py::arg("ttl_ms") = 0)
      .def("cancel", &Engine::cancel, py::arg("batch_id"), py::call_guard<py::gil_scoped_release>())
      .def("drain", &drain)
      .def("counters",
           [](const Engine& e) {
             const Engine::Counters c = e.counters();
             py::dict d;
             d["connections_opened"] = c.opened;
             d["reconnects"] = c.reconnects;
             d["connect_failures"] = c.connect_failures;
             d["connections_dropped"] = c.dropped;
             return d;
           })
      .def("close", &Engine::close, py::call_guard<py::gil_scoped_release>());

  m.def(
      "tile",
      [](std::size_t n, std::size_t workers, const std::optional<std::vector<std::uint64_t>>& weights) {
        if (weights && weights->size() != n) throw py::value_error("weights must have n entries");
        auto tiles = respkv::tile(n, workers, weights ? weights->data() : nullptr);
        py::list out;
        for (const auto& t : tiles) out.append(py::make_tuple(t.first, t.second));
        return out;
      },
      py::arg("n"), py::arg("workers"), py::arg("weights") = py::none());
  m.def("parse_replies", &parse_replies, py::arg("chunks"), py::arg("target_size") = py::none(),
        py::kw_only(), py::arg("limits"));
}
