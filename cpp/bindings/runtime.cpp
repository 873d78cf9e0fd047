// The process-wide parts: build facts, llama.cpp's log routed to Python, RPC workers.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings.hpp"

#include "mr/context.hpp"
#include "mr/model.hpp"
#include "mr/log.hpp"
#include "mr/rpc.hpp"

namespace mr::bind {
namespace {

using namespace pybind11::literals;

void set_log_handler(py::function handler, int min_level) {
    auto shared = std::make_shared<py::function>(std::move(handler));
    log::set_sink(
        [shared](int level, const std::string& message) {
            if (!Py_IsInitialized()) return;
            py::gil_scoped_acquire gil;
            try {
                (*shared)(level, message);
            } catch (py::error_already_set& e) {
                e.discard_as_unraisable("mr log handler");
            }
        },
        min_level);
}

// (endpoint, device name, free bytes, total bytes) per worker device.
py::list probe_workers(const std::vector<std::string>& endpoints) {
    std::vector<rpc::WorkerDevice> devices;
    {
        py::gil_scoped_release nogil;
        devices = rpc::Workers(endpoints).devices();
    }
    py::list out;
    for (const auto& d : devices) out.append(py::make_tuple(d.endpoint, d.name, d.free, d.total));
    return out;
}

}  // namespace

void bind_runtime(py::module_& m) {
    log::install();
    m.def("llama_commit", [] { return std::string(MR_LLAMA_COMMIT); });
    m.def("system_info", &system_info);
    m.def("default_threads", &default_threads);
    m.def("set_log_handler", &set_log_handler, "handler"_a, "min_level"_a);
    m.def("set_log_level", &log::set_level, "min_level"_a);
    m.def("clear_log_handler", &log::clear_sink, release_gil());
    m.def("probe_workers", &probe_workers, "endpoints"_a);
    m.def(
        "serve_worker",
        [](const std::string& host, int port, int n_threads, size_t mem_limit, int idle_timeout_ms,
           rpc::ClientLog on_client) {
            rpc::serve({host, port, n_threads, mem_limit, idle_timeout_ms}, std::move(on_client));
        },
        "host"_a, "port"_a, "n_threads"_a, "mem_limit"_a, "idle_timeout_ms"_a, "on_client"_a, release_gil());
}

}  // namespace mr::bind
