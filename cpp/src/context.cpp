#include "mr/context.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "mr/errors.hpp"
#include "mr/log.hpp"
#include "mr/model.hpp"

namespace mr {

namespace {

// llama.cpp resolves flash attention "auto" with a probe and says the outcome only in its log
// ("Flash Attention enabled" / "Flash Attention not supported, set to disabled").
bool resolved_flash_attn(const llama_context_params& params, const log::Capture& probe) {
    if (params.flash_attn_type != LLAMA_FLASH_ATTN_TYPE_AUTO) {
        return params.flash_attn_type == LLAMA_FLASH_ATTN_TYPE_ENABLED;
    }
    for (const auto& line : probe.lines()) {
        if (line.find("disabled") != std::string::npos) return false;
        if (line.find("enabled") != std::string::npos) return true;
    }
    return false;
}

// mr builds ggml without OpenMP and gives each context its own ggml thread pool. With OpenMP,
// every thread that ever ran ggml work (a model load that repacks weights for AMX, an embedder
// on an executor thread, a second engine) keeps an OpenMP team; once libgomp manages more
// threads than there are cores it throttles its barrier spinning to a few hundred spins and
// every one of the hundreds of barriers in a decode step turns into a futex sleep and wake,
// which on a small machine costs more than the step's math. A pool per context spins on its own atomics.
ggml_threadpool* make_threadpool(const llama_context_params& params, bool remote) {
    ggml_threadpool_params tp = ggml_threadpool_params_default(std::max(params.n_threads, params.n_threads_batch));
    // With RPC workers a step also waits on the network: spinning through that wait would take
    // the cores a worker on this machine computes on. The threads sleep between graphs instead.
    if (remote) tp.poll = 0;
    ggml_threadpool* pool = ggml_threadpool_new(&tp);
    if (pool == nullptr) throw ModelLoadError("could not start " + std::to_string(tp.n_threads) + " CPU threads");
    return pool;
}

}  // namespace

ContextPtr make_context(const Model& model, const llama_context_params& params, bool* flash_attn) {
    log::take_last_error();
    log::Capture probe("Flash Attention");
    ContextDeleter owner{make_threadpool(params, !model.workers().empty())};
    llama_context* ctx = llama_init_from_model(model.get(), params);
    if (ctx == nullptr) {
        ggml_threadpool_free(owner.pool);
        std::string why = log::take_last_error();
        throw ModelLoadError("llama.cpp could not create a context" + (why.empty() ? "" : ": " + why));
    }
    llama_attach_threadpool(ctx, owner.pool, owner.pool);
    if (flash_attn != nullptr) *flash_attn = resolved_flash_attn(params, probe);
    return ContextPtr(ctx, owner);
}

bool move_sequence_down(llama_context* ctx, llama_seq_id seq) {
    const size_t size = llama_state_seq_get_size_ext(ctx, seq, LLAMA_STATE_SEQ_FLAGS_NONE);
    std::vector<uint8_t> state(size);
    if (llama_state_seq_get_data_ext(ctx, state.data(), size, seq, LLAMA_STATE_SEQ_FLAGS_NONE) != size) return false;
    // The restore removes the sequence's cells first, so the lowest free ones include its own.
    return llama_state_seq_set_data_ext(ctx, state.data(), size, seq, LLAMA_STATE_SEQ_FLAGS_NONE) == size;
}

void park_threads(const ContextPtr& ctx) {
    if (ctx.get_deleter().pool != nullptr) ggml_threadpool_pause(ctx.get_deleter().pool);
}

int default_threads() { return common_cpu_get_num_math(); }

Batch::Batch(int n_tokens_max, int n_seq_max)
    : batch_(llama_batch_init(n_tokens_max, 0, n_seq_max)), capacity_(n_tokens_max) {}

Batch::~Batch() { llama_batch_free(batch_); }

int Batch::add(llama_token token, llama_pos pos, llama_seq_id seq, bool logits) {
    const int i = batch_.n_tokens;
    batch_.token[i] = token;
    batch_.pos[i] = pos;
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = seq;
    batch_.logits[i] = logits;
    batch_.n_tokens++;
    return i;
}

llama_batch Batch::view(int offset, int n) const {
    llama_batch v = batch_;
    v.n_tokens = n;
    v.token += offset;
    v.pos += offset;
    v.n_seq_id += offset;
    v.seq_id += offset;
    v.logits += offset;
    return v;
}

}  // namespace mr
