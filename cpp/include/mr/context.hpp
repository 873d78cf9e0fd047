// RAII owners for llama contexts and batches, shared by the engine and the embedder.
#pragma once

#include <memory>

#include "ggml-cpu.h"
#include "llama.h"

namespace mr {

class Model;

// A context owns the CPU thread pool attached to it: freed after the context that uses it.
struct ContextDeleter {
    ggml_threadpool* pool = nullptr;
    void operator()(llama_context* c) const {
        llama_free(c);
        if (pool != nullptr) ggml_threadpool_free(pool);
    }
};
using ContextPtr = std::unique_ptr<llama_context, ContextDeleter>;

// Throws ModelLoadError when llama.cpp cannot create the context (e.g. out of memory). Every
// context gets a persistent thread pool of its own (see make_context in context.cpp for why).
// `flash_attn`, when given, receives whether flash attention is on (llama.cpp resolves "auto").
ContextPtr make_context(const Model& model, const llama_context_params& params, bool* flash_attn = nullptr);

// Lets the context's pool threads sleep now instead of spinning for the next graph (the next
// graph wakes them): for an engine that has run out of work. A pool spins for about 100 ms after
// each graph, which took a core from whatever ran next (another model, another server).
void park_threads(const ContextPtr& ctx);

// Parks a context's threads when it goes out of scope (a call that computes and then idles).
struct ParkedAfter {
    const ContextPtr& ctx;
    ~ParkedAfter() { park_threads(ctx); }
};

// Copies sequence `seq`'s cells out and back (llama_state_seq_*): in a shared cache they land in
// the lowest free cells. False when llama.cpp could not (the sequence is then empty).
bool move_sequence_down(llama_context* ctx, llama_seq_id seq);

// Threads for decoding when the caller says 0: llama.cpp's count of math cores.
int default_threads();

class Batch {
public:
    Batch(int n_tokens_max, int n_seq_max);
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

    void clear() { batch_.n_tokens = 0; }
    // Returns the index of the token in the batch (the logits index when `logits` is set).
    int add(llama_token token, llama_pos pos, llama_seq_id seq, bool logits);
    int size() const { return batch_.n_tokens; }
    int capacity() const { return capacity_; }
    const llama_batch& get() const { return batch_; }
    // A view of tokens [offset, offset + n) for decoding a large batch in pieces.
    llama_batch view(int offset, int n) const;

private:
    llama_batch batch_;
    int capacity_;
};

}  // namespace mr
