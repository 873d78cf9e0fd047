#include "mr/context.hpp"

#include "common.h"
#include "mr/errors.hpp"
#include "mr/log.hpp"
#include "mr/model.hpp"

namespace mr {

ContextPtr make_context(const Model& model, const llama_context_params& params) {
    log::take_last_error();
    llama_context* ctx = llama_init_from_model(model.get(), params);
    if (ctx == nullptr) {
        std::string why = log::take_last_error();
        throw ModelLoadError("llama.cpp could not create a context" + (why.empty() ? "" : ": " + why));
    }
    return ContextPtr(ctx);
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
