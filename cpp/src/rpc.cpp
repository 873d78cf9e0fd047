#include "mr/rpc.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <set>

#include "ggml-rpc.h"
#include "llama.h"
#include "mr/context.hpp"
#include "mr/errors.hpp"
#include "mr/model.hpp"

namespace mr::rpc {
namespace {

bool is_worker_device(ggml_backend_dev_t dev) {
    return std::string(ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev))) == "RPC";
}

// This machine's GPUs (integrated ones only when there is no discrete one), as llama.cpp's own
// device selection picks them.
std::vector<ggml_backend_dev_t> local_gpus() {
    std::vector<ggml_backend_dev_t> gpus, igpus;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (is_worker_device(dev)) continue;
        const auto type = ggml_backend_dev_type(dev);
        if (type == GGML_BACKEND_DEVICE_TYPE_GPU) gpus.push_back(dev);
        if (type == GGML_BACKEND_DEVICE_TYPE_IGPU) igpus.push_back(dev);
    }
    return gpus.empty() ? igpus : gpus;
}

size_t free_memory(ggml_backend_dev_t dev) {
    size_t free = 0, total = 0;
    ggml_backend_dev_memory(dev, &free, &total);
    return free;
}

}  // namespace

void check_endpoint(const std::string& endpoint) {
    const size_t colon = endpoint.rfind(':');
    const std::string host = colon == std::string::npos ? "" : endpoint.substr(0, colon);
    const std::string port = colon == std::string::npos ? "" : endpoint.substr(colon + 1);
    const bool digits = !port.empty() && port.size() <= 5 &&
                        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (host.empty() || !digits || std::stoi(port) < 1 || std::stoi(port) > 65535 ||
        host.find_first_of(" ,[]") != std::string::npos) {
        throw InvalidArgument("an RPC worker is HOST:PORT (an IPv4 address or host name, port 1-65535), got '" +
                              endpoint + "'");
    }
}

Workers::Workers(const std::vector<std::string>& endpoints) : endpoints_(endpoints) {
    init_backend();
    std::set<std::string> seen;
    for (const auto& endpoint : endpoints_) {
        check_endpoint(endpoint);
        if (!seen.insert(endpoint).second) throw InvalidArgument("RPC worker " + endpoint + " is named twice");
    }
    for (const auto& endpoint : endpoints_) {
        try {
            // A backend holds the connection: llama.cpp's loads and queries reuse it. A failed
            // connection (a model that lost this worker and is still unloading) is replaced.
            holders_.emplace_back(ggml_backend_rpc_connect(endpoint.c_str()));
        } catch (const std::exception& e) {
            throw ModelLoadError(e.what());
        }
        ggml_backend_reg_t reg = ggml_backend_rpc_add_server(endpoint.c_str());
        for (size_t i = 0; reg != nullptr && i < ggml_backend_reg_dev_count(reg); ++i) {
            WorkerDevice d;
            d.endpoint = endpoint;
            d.dev = ggml_backend_reg_dev_get(reg, i);
            d.name = ggml_backend_dev_name(d.dev);
            ggml_backend_dev_memory(d.dev, &d.free, &d.total);
            devices_.push_back(d);
        }
        const std::string why = lost();
        if (!why.empty()) throw ModelLoadError(why);
    }
}

std::string Workers::lost() const {
    for (size_t i = 0; i < holders_.size(); ++i) {
        if (ggml_backend_rpc_failed(holders_[i].get())) return "lost the connection to the RPC worker at " + endpoints_[i];
    }
    return {};
}

std::string Workers::endpoint_of(const std::string& name) const {
    for (const auto& d : devices_) {
        if (d.name == name) return d.endpoint;
    }
    return {};
}

Split plan_split(const Workers& workers, int n_layer, int n_gpu_layers) {
    Split split;
    std::vector<double> weights;
    for (const auto& d : workers.devices()) {
        split.devices.push_back(d.dev);
        weights.push_back(static_cast<double>(d.free));
    }
    const auto gpus = local_gpus();
    for (ggml_backend_dev_t dev : gpus) {
        split.devices.push_back(dev);
        weights.push_back(static_cast<double>(free_memory(dev)));
    }
    const int slots = n_layer + 1;  // llama.cpp counts the output layer as one more
    if (n_gpu_layers >= 0) {
        split.n_gpu_layers = std::min(n_gpu_layers, slots);
    } else if (!gpus.empty()) {
        split.n_gpu_layers = slots;
    } else {
        // The CPU is not one of llama.cpp's devices: it keeps the first layers, as many as its
        // share of the free memory, and the workers take the rest (at least one layer).
        double remote = 0;
        for (double w : weights) remote += w;
        const double local = static_cast<double>(free_memory(ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)));
        const double share = local + remote > 0 ? local / (local + remote) : 0.0;
        const int on_cpu = std::clamp(static_cast<int>(std::lround(slots * share)), 0, slots - 1);
        split.n_gpu_layers = slots - on_cpu;
    }
    split.tensor_split.assign(std::max(llama_max_devices(), split.devices.size()), 0.0f);
    for (size_t i = 0; i < weights.size(); ++i) split.tensor_split[i] = static_cast<float>(weights[i]);
    split.devices.push_back(nullptr);
    return split;
}

std::vector<ggml_backend_dev_t> local_devices() {
    init_backend();
    auto devices = local_gpus();
    if (devices.empty()) devices.push_back(ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU));
    return devices;
}

namespace {

std::mutex g_serve_mutex;  // one worker per process: ggml's server hooks are process-wide
ClientLog g_client_log;
ServeOptions g_options;

std::string seconds(int ms) { return std::to_string((ms + 999) / 1000) + " s"; }

// ggml's reason ("handshake", "idle" or "") in words, with the timeout that ran out.
std::string dropped_because(const char* why) {
    const std::string w = why ? why : "";
    if (w == "handshake") return "sent no handshake within " + seconds(g_options.handshake_timeout_ms);
    if (w == "idle") return "was silent for " + seconds(g_options.idle_timeout_ms);
    return w;
}

void on_client(const char* peer, bool connected, const char* why, void* /*user*/) {
    if (g_client_log) g_client_log(peer ? peer : "?", connected, dropped_because(why));
}

}  // namespace

void serve(const ServeOptions& options, ClientLog client_log) {
    std::unique_lock<std::mutex> lock(g_serve_mutex, std::try_to_lock);
    if (!lock.owns_lock()) throw Error("this process already serves an RPC worker");
    auto devices = local_devices();
    if (options.port < 1 || options.port > 65535) throw InvalidArgument("the port must be in [1, 65535]");
    const std::string endpoint = options.host + ":" + std::to_string(options.port);
    check_endpoint(endpoint);
    if (options.idle_timeout_ms < 0 || options.handshake_timeout_ms < 0) {
        throw InvalidArgument("the worker's timeouts must be >= 0");
    }
    g_client_log = std::move(client_log);
    g_options = options;
    ggml_backend_rpc_server_hooks hooks{};
    hooks.on_client = on_client;
    hooks.mem_limit = options.mem_limit;
    hooks.handshake_timeout_ms = options.handshake_timeout_ms;
    hooks.idle_timeout_ms = options.idle_timeout_ms;
    ggml_backend_rpc_set_server_hooks(&hooks);
    const size_t threads = options.n_threads > 0 ? options.n_threads : default_threads();
    errno = 0;
    ggml_backend_rpc_start_server(endpoint.c_str(), nullptr, threads, devices.size(), devices.data());
    const int err = errno;  // the server returns only when it could not start (bind, listen)
    ggml_backend_rpc_set_server_hooks(nullptr);
    g_client_log = nullptr;
    throw Error("cannot serve on " + endpoint + (err ? std::string(": ") + std::strerror(err) : std::string()));
}

}  // namespace mr::rpc
