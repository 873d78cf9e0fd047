// A loaded GGUF model and its vocabulary. Shared (std::shared_ptr) by every engine and embedder
// that runs it, so the weights outlive whichever of them is freed last.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llama.h"
#include "mr/rpc.hpp"

namespace mr {

struct ModelParams {
    std::string path;
    int n_gpu_layers = -1;  // -1: all layers on the GPU when there is one
    bool use_mmap = true;
    // Let the CPU backend repack weights into its extra buffer types (AMX tiles, AVX-512/NEON
    // interleaved blocks) as llama.cpp's tools do by default; off keeps the GGUF layout.
    bool repack = true;
    // RPC workers ("host:port") that take a share of the layers (mr::rpc::plan_split).
    std::vector<std::string> rpc_workers;
};

// One backend buffer holding model weights, as llama.cpp reported it while loading
// ("CPU_Mapped", "AMX", "CPU_REPACK", "CUDA0", ...).
struct WeightBuffer {
    std::string name;
    double mib = 0.0;
};

// Where the model's layers live: one entry per device that holds any.
struct Placement {
    std::string device;  // ggml's name: "CPU", "CUDA0", "RPC0"
    std::string host;    // the worker's "host:port"; "" for this machine
    int layers = 0;      // repeating layers (of n_layer)
    bool output = false; // it also holds the output layer
};

struct ModelDeleter {
    void operator()(llama_model* m) const { llama_model_free(m); }
};

class Model {
public:
    // Throws ModelLoadError with a one-line reason (missing file, not a GGUF, truncated, ...).
    static std::shared_ptr<Model> load(const ModelParams& params);

    llama_model* get() const { return model_.get(); }
    const llama_vocab* vocab() const { return vocab_; }
    const std::string& path() const { return path_; }

    std::map<std::string, std::string> metadata() const;
    std::string description() const;
    std::string architecture() const;
    std::string chat_template() const;  // "" when the GGUF has none
    int n_ctx_train() const { return llama_model_n_ctx_train(model_.get()); }
    int n_embd() const { return llama_model_n_embd(model_.get()); }
    int n_layer() const { return llama_model_n_layer(model_.get()); }
    uint64_t n_params() const { return llama_model_n_params(model_.get()); }
    uint64_t size_bytes() const { return llama_model_size(model_.get()); }
    bool has_encoder() const { return llama_model_has_encoder(model_.get()); }
    bool has_decoder() const { return llama_model_has_decoder(model_.get()); }
    const std::vector<WeightBuffer>& weight_buffers() const { return weight_buffers_; }
    const std::vector<Placement>& placement() const { return placement_; }
    // Whether every weight is in this machine's memory in ggml's own layout and the CPU computes
    // every step: no GPU device (llama.cpp hands a large batch's work to one even for weights in
    // host memory), no RPC worker, no repacked buffer (AMX, CPU_REPACK).
    bool plain_cpu_weights() const;
    // Whether this machine has no GPU device: CPUs (this one's, or RPC workers') compute every step.
    static bool no_gpu();
    // The RPC workers' devices (empty for a model that uses none).
    std::vector<rpc::WorkerDevice> workers() const;
    // Why a worker's connection failed ("lost the connection to the RPC worker at ..."), or "".
    std::string lost_worker() const;
    // The engine's check after a decode: waits for `ctx`'s step (only with workers: a lost
    // worker shows once the results are read) and says whether a worker was lost meanwhile.
    std::string check_workers(llama_context* ctx) const;

    // Vocabulary.
    int n_vocab() const { return llama_vocab_n_tokens(vocab_); }
    std::vector<llama_token> tokenize(const std::string& text, bool add_special, bool parse_special) const;
    std::string detokenize(const std::vector<llama_token>& tokens, bool remove_special, bool unparse_special) const;
    std::string token_to_piece(llama_token token, bool special) const;
    llama_token bos() const { return llama_vocab_bos(vocab_); }
    llama_token eos() const { return llama_vocab_eos(vocab_); }
    llama_token eot() const { return llama_vocab_eot(vocab_); }
    bool is_eog(llama_token token) const { return llama_vocab_is_eog(vocab_, token); }
    std::vector<llama_token> eog_tokens() const;

    // Throws InvalidArgument unless 0 <= token < n_vocab.
    void check_token(llama_token token) const;

private:
    Model(std::unique_ptr<rpc::Workers> workers, std::unique_ptr<llama_model, ModelDeleter> model,
          std::string path, std::vector<WeightBuffer> weight_buffers, std::vector<Placement> placement);
    std::string meta_value(const char* key) const;

    std::unique_ptr<rpc::Workers> workers_;  // before model_: the connections outlive the weights
    std::unique_ptr<llama_model, ModelDeleter> model_;
    const llama_vocab* vocab_;
    std::string path_;
    std::vector<WeightBuffer> weight_buffers_;
    std::vector<Placement> placement_;
};

// One-time backend setup (idempotent; called by Model::load).
void init_backend();
// ggml's description of the CPU/GPU features this build uses.
std::string system_info();

}  // namespace mr
