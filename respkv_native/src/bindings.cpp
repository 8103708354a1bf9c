// The one file that includes pybind11: respkv_native._core.
//
// The seam is narrow on purpose. respkv/_native.py validates everything with the shared
// helpers of respkv/_validate.py (so messages match the pure backend by construction)
// and hands over byte keys and flat, C-contiguous 'B' memoryviews that it keeps alive
// until the batch's completion is drained. Here, holding the GIL, `submit` copies the
// keys and takes the buffer pointers; then it releases the GIL to tile and queue the
// batch. `drain` releases the GIL while it takes the completion queue, and builds the
// Python results afterwards. Worker threads never see a Python object.
//
// `tile` and `parse_replies` expose the C++ tiling and codec to the tests, which compare
// them with respkv/_tiling.py and respkv/resp2.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

constexpr int CONTRACT_VERSION = 1;  // respkv._contract.CONTRACT_VERSION

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
                     const std::optional<py::list>& buffers) {
  if (op < 0 || op > 3) throw py::value_error("op must be 0..3 (respkv.Op)");
  const auto kind = static_cast<Op>(op);
  const bool with_values = kind == Op::Set || kind == Op::Get;
  const std::size_t n = keys.size();
  if (with_values && !buffers) throw py::value_error("SET and GET need buffers");
  if (with_values && buffers->size() != n) {
    throw py::value_error("length mismatch: " + std::to_string(n) + " keys but " +
                          std::to_string(buffers->size()) + " buffers");
  }
  auto batch = std::make_shared<Batch>(kind, n);
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
  py::gil_scoped_release nogil;
  return engine.submit(std::move(batch));
}

py::list drain(Engine& engine) {
  std::vector<std::shared_ptr<Batch>> done;
  {
    py::gil_scoped_release nogil;
    done = engine.drain();
  }
  py::list out;
  for (const auto& b : done) {
    py::list errors;
    for (const std::string& e : b->errors) {
      if (e.empty()) {
        errors.append(py::none());
      } else {
        PyObject* text = PyUnicode_DecodeUTF8(e.data(), static_cast<Py_ssize_t>(e.size()), "replace");
        if (text == nullptr) throw py::error_already_set();
        errors.append(py::reinterpret_steal<py::str>(text));
      }
    }
    py::bytes statuses(reinterpret_cast<const char*>(b->statuses.data()), b->statuses.size());
    out.append(py::make_tuple(b->id, static_cast<int>(b->op), statuses, errors));
  }
  return out;
}

std::unique_ptr<Engine> make_engine(const std::string& host, int port,
                                    const std::optional<std::string>& unix_path,
                                    const std::string& username, const std::string& password,
                                    std::int64_t db, std::size_t num_workers,
                                    double connect_timeout, const py::object& op_timeout,
                                    const std::string& client_name, std::size_t window_values,
                                    std::size_t window_bytes, std::size_t window_small,
                                    double reconnect_backoff_min, double reconnect_backoff_max,
                                    bool tls, const std::optional<std::string>& tls_ca_file,
                                    const std::optional<std::string>& tls_cert_file,
                                    const std::optional<std::string>& tls_key_file,
                                    const std::optional<std::string>& tls_server_hostname,
                                    bool tls_verify) {
  EngineOptions o;
  if (tls) {
    if (!respkv::tls_available()) {
      throw py::value_error("this build of respkv_native has no TLS (SUPPORTS_TLS is False)");
    }
    respkv::TlsSettings t;
    t.ca_file = tls_ca_file;
    t.cert_file = tls_cert_file;
    t.key_file = tls_key_file;
    t.server_hostname = tls_server_hostname;
    t.verify = tls_verify;
    o.connect.tls = std::move(t);
  }
  o.connect.host = host;
  o.connect.port = port;
  o.connect.unix_path = unix_path;
  o.connect.username = username;
  o.connect.password = password;
  o.connect.db = db;
  o.connect.client_name = client_name;
  o.connect.connect_timeout = connect_timeout;
  o.num_workers = num_workers;
  // The value, and its text exactly as Python prints it for the TIMEOUT message.
  o.op_timeout = PyFloat_AsDouble(op_timeout.ptr());
  if (o.op_timeout == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  o.op_timeout_text = py::str(op_timeout);
  o.window_values = window_values;
  o.window_bytes = window_bytes;
  o.window_small = window_small;
  o.reconnect_backoff_min = reconnect_backoff_min;
  o.reconnect_backoff_max = reconnect_backoff_max;
  return std::make_unique<Engine>(std::move(o));
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
// ("protocol_error", message). With `target_size`, every reply is parsed with a target
// of that many bytes (bulk payloads of that size land in it, reported as "filled").
py::list parse_replies(const std::vector<std::string>& chunks, std::optional<std::size_t> target_size) {
  respkv::Reader reader;
  std::vector<std::uint8_t> target(target_size.value_or(0));
  py::list out;
  respkv::Reply reply;
  try {
    for (const auto& chunk : chunks) {
      reader.feed(chunk.data(), chunk.size());
      for (;;) {
        if (target_size) reader.set_target(target.data(), target.size());
        if (!reader.gets(reply)) break;
        out.append(reply_to_python(reply));
      }
    }
  } catch (const respkv::ProtocolError& e) {
    out.append(py::make_tuple("protocol_error", std::string(e.what())));
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "respkv native engine (use respkv, not this module directly)";
  m.attr("CONTRACT_VERSION") = CONTRACT_VERSION;
  m.attr("LARGE_VALUE_BYTES") = respkv::LARGE_VALUE_BYTES;
  // Whether this build has TLS (OpenSSL); respkv._backend reads it to choose for resps://.
  m.attr("SUPPORTS_TLS") = respkv::tls_available();

  py::class_<Engine>(m, "Engine")
      .def(py::init(&make_engine), py::kw_only(), py::arg("host"), py::arg("port"),
           py::arg("unix_path"), py::arg("username"), py::arg("password"), py::arg("db"),
           py::arg("num_workers"), py::arg("connect_timeout"), py::arg("op_timeout"),
           py::arg("client_name"), py::arg("window_values"), py::arg("window_bytes"),
           py::arg("window_small"), py::arg("reconnect_backoff_min"),
           py::arg("reconnect_backoff_max"), py::arg("tls") = false,
           py::arg("tls_ca_file") = py::none(), py::arg("tls_cert_file") = py::none(),
           py::arg("tls_key_file") = py::none(), py::arg("tls_server_hostname") = py::none(),
           py::arg("tls_verify") = true)
      .def("event_fd", &Engine::event_fd)
      .def("submit", &submit, py::arg("op"), py::arg("keys"), py::arg("buffers"))
      .def("drain", &drain)
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
  m.def("parse_replies", &parse_replies, py::arg("chunks"), py::arg("target_size") = py::none());
}
