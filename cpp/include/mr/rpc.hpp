// llama.cpp's RPC backend: models whose layers live partly on other machines (`--rpc`), and the
// worker side that serves this machine's backend to them (`mr worker`).
//
// The RPC protocol has no authentication: a worker must only be reachable on a trusted network.
// A worker serves one client (one mr process) at a time, so it drops a client that stays silent
// past its handshake or idle timeout (mr's clients send keep-alive requests while idle), and it
// refuses buffers beyond the memory it offers. A connection that fails is marked failed
// by ggml (vendor/patches/0002-*): its calls then complete at once and the model using it ends its
// requests with an error instead of taking the process down; the next load opens a new one.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ggml-backend.h"

namespace mr::rpc {

// One device a worker offers, with the memory it reported when it was connected.
struct WorkerDevice {
    std::string endpoint;  // "host:port"
    std::string name;      // ggml's device name ("RPC0")
    size_t free = 0;
    size_t total = 0;
    ggml_backend_dev_t dev = nullptr;
};

// Throws InvalidArgument unless `endpoint` is "host:port" with a port in [1, 65535].
void check_endpoint(const std::string& endpoint);

// An open connection to each worker, held as long as this object lives (a loaded model's
// lifetime): every call llama.cpp makes to a worker goes through it, so a worker sees one
// client per model load instead of one per query.
class Workers {
public:
    // Connects to each endpoint; throws ModelLoadError naming a worker that cannot be reached.
    explicit Workers(const std::vector<std::string>& endpoints);
    Workers(const Workers&) = delete;
    Workers& operator=(const Workers&) = delete;

    const std::vector<std::string>& endpoints() const { return endpoints_; }
    const std::vector<WorkerDevice>& devices() const { return devices_; }
    // "lost the connection to the RPC worker at host:port" once a connection failed, else "".
    std::string lost() const;
    // The endpoint of a device ggml names `name` ("RPC0"), or "" when it is not a worker's.
    std::string endpoint_of(const std::string& name) const;

private:
    struct BackendFree {
        void operator()(ggml_backend_t b) const { ggml_backend_free(b); }
    };
    std::vector<std::string> endpoints_;
    std::vector<std::unique_ptr<ggml_backend, BackendFree>> holders_;  // keep the connections open
    std::vector<WorkerDevice> devices_;
};

// How llama.cpp spreads a model over the workers and this machine.
struct Split {
    std::vector<ggml_backend_dev_t> devices;  // workers first, then local GPUs; NULL-terminated
    std::vector<float> tensor_split;          // one weight per device (llama_max_devices() long)
    int n_gpu_layers = 0;                     // layers (of n_layer + 1, the output counted) on them
};

// Layers are spread in proportion to the free memory each device reports. Without a local GPU,
// this machine's CPU keeps the first layers, its share by its own free memory; n_gpu_layers >= 0
// overrides how many layers go to the devices.
Split plan_split(const Workers& workers, int n_layer, int n_gpu_layers);

// The local devices a worker serves: the GPUs, or the CPU when there is none.
std::vector<ggml_backend_dev_t> local_devices();

// A worker serves one client at a time, so a connection that says nothing would lock every other
// client out: one silent this long before its handshake is complete is dropped.
constexpr int kHandshakeTimeoutMs = 5000;

struct ServeOptions {
    std::string host = "127.0.0.1";  // an IPv4 address
    int port = 50052;
    int n_threads = 0;     // 0: one per math core
    size_t mem_limit = 0;  // > 0: the memory offered to clients: reported, and buffers beyond it refused
    int idle_timeout_ms = 60000;  // > 0: a client silent this long is dropped (0: never); mr's
                                  // clients send a keep-alive request after 2 s of silence
    int handshake_timeout_ms = kHandshakeTimeoutMs;
};

// peer "ip:port", true when it connects, false when it leaves; `why` is "" or, when the worker
// dropped the client, why ("sent no handshake within 5 s", "was silent for 60 s").
using ClientLog = std::function<void(const std::string& peer, bool connected, const std::string& why)>;

// Serves this machine's backend over the RPC protocol; returns only when it could not start
// (then throws Error). One worker per process.
void serve(const ServeOptions& options, ClientLog on_client);

}  // namespace mr::rpc
