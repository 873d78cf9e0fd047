// Sentence embeddings: a second context in embeddings mode, many inputs packed per batch.
// In rank mode the same machinery scores (query, document) pairs with the model's classifier head.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mr/context.hpp"

namespace mr {

class Model;

struct EmbedderParams {
    int n_ctx = 2048;     // the longest input, in tokens (rounded up: see n_ctx() and embedder.cpp)
    int n_seq_max = 32;   // inputs per batch
    int n_threads = 0;    // 0: llama.cpp's count of math cores
    bool rank = false;    // rank pooling: one relevance score per (query, document) pair
};

struct Embeddings {
    std::vector<float> data;  // row-major, n_rows x n_embd (rank mode: n_rows x n_cls_out)
    int n_rows = 0;
    int n_embd = 0;
    int n_tokens = 0;         // tokens processed (for usage)
    int n_batches = 0;        // llama.cpp calls it took (inputs are packed many per batch)
};

class Embedder {
public:
    Embedder(std::shared_ptr<Model> model, const EmbedderParams& params);

    // One row per text. Inputs longer than n_ctx throw InvalidArgument unless `truncate`.
    Embeddings embed(const std::vector<std::string>& texts, bool normalize, bool truncate);
    // Rank mode only: one row of classifier outputs per document, scored against `query`.
    // The pair is laid out as llama-server does: the model's rerank template when it has one,
    // else BOS query EOS SEP document EOS (each special token where the vocabulary adds it).
    Embeddings rerank(const std::string& query, const std::vector<std::string>& documents, bool truncate);
    // One row per token list, embedded as given (ids are checked against the vocabulary).
    Embeddings embed_tokens(std::vector<std::vector<int32_t>> inputs, bool normalize, bool truncate);
    // Ends every call running or waiting on this embedder with Cancelled(why), within one graph
    // node of llama.cpp's compute; later calls run as usual. Thread-safe.
    void cancel(const std::string& why);
    // The pooling actually used: the model's, or mean pooling for a generative model.
    int pooling_type() const { return pooling_; }
    int n_ctx() const { return n_ctx_; }  // the longest input: n_ctx rounded up to what llama.cpp allocates

    bool rank() const { return params_.rank; }
    int n_out() const;  // floats per row

private:
    Embeddings run(std::vector<std::vector<llama_token>> inputs, bool normalize, uint64_t epoch);
    std::vector<llama_token> checked(std::vector<llama_token> tokens, size_t index, bool truncate) const;
    std::vector<llama_token> rerank_pair(const std::string& query, const std::string& document) const;
    void run_batch(Batch& batch, int n_seqs, float* out, bool normalize);
    bool cancelled() const;
    void throw_if_cancelled() const;
    void throw_if_cancelled_since(uint64_t epoch) const;
    static bool aborting(void* self);  // llama.cpp's abort callback

    std::shared_ptr<Model> model_;
    EmbedderParams params_;
    ContextPtr ctx_;
    int pooling_ = 0;
    int n_ctx_ = 0;
    std::mutex mutex_;  // one embed() at a time on this context
    // cancel() bumps cancels_; a call runs while cancels_ still equals the epoch_ it started in.
    std::atomic<uint64_t> cancels_{0};
    std::atomic<uint64_t> epoch_{0};
    mutable std::mutex why_mutex_;
    std::string why_;
};

}  // namespace mr
