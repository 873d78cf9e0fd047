#include "mr/embedder.hpp"

#include <algorithm>
#include <cmath>

#include "mr/errors.hpp"
#include "mr/model.hpp"

namespace mr {
namespace {

llama_context_params embedding_params(const EmbedderParams& p, enum llama_pooling_type pooling) {
    llama_context_params cp = llama_context_default_params();
    cp.embeddings = true;
    cp.pooling_type = pooling;
    cp.n_ctx = p.n_ctx;
    cp.n_batch = p.n_ctx;   // non-causal models need a whole input in one micro-batch
    cp.n_ubatch = p.n_ctx;
    cp.n_seq_max = p.n_seq_max;
    cp.kv_unified = true;
    cp.n_threads = p.n_threads > 0 ? p.n_threads : default_threads();
    cp.n_threads_batch = cp.n_threads;
    cp.no_perf = true;
    return cp;
}

void l2_normalize(float* row, int n) {
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += static_cast<double>(row[i]) * row[i];
    const float scale = sum > 0.0 ? static_cast<float>(1.0 / std::sqrt(sum)) : 0.0f;
    for (int i = 0; i < n; ++i) row[i] *= scale;
}

}  // namespace

Embedder::Embedder(std::shared_ptr<Model> model, const EmbedderParams& params)
    : model_(std::move(model)), params_(params) {
    if (params_.n_ctx <= 0) throw InvalidArgument("n_ctx must be > 0, got " + std::to_string(params_.n_ctx));
    if (params_.n_seq_max < 1 || params_.n_seq_max > 256) throw InvalidArgument("n_seq_max must be in [1, 256]");
    ctx_ = make_context(*model_, embedding_params(params_, LLAMA_POOLING_TYPE_UNSPECIFIED));
    if (llama_pooling_type(ctx_.get()) == LLAMA_POOLING_TYPE_NONE) {
        // A generative model has no pooling of its own; one vector per input needs one: use mean.
        ctx_.reset();
        ctx_ = make_context(*model_, embedding_params(params_, LLAMA_POOLING_TYPE_MEAN));
    }
    pooling_ = llama_pooling_type(ctx_.get());
    n_ctx_ = static_cast<int>(llama_n_ctx(ctx_.get()));
}

Embeddings Embedder::embed(const std::vector<std::string>& texts, bool normalize, bool truncate) {
    std::vector<std::vector<llama_token>> inputs;
    inputs.reserve(texts.size());
    for (const std::string& text : texts) inputs.push_back(model_->tokenize(text, true, false));
    return embed_tokens(std::move(inputs), normalize, truncate);
}

Embeddings Embedder::embed_tokens(std::vector<std::vector<int32_t>> inputs, bool normalize, bool truncate) {
    const int n_vocab = model_->n_vocab();
    for (size_t i = 0; i < inputs.size(); ++i) {
        auto& tokens = inputs[i];
        if (tokens.empty()) throw InvalidArgument("input " + std::to_string(i) + " is empty");
        for (const int32_t t : tokens) {
            if (t < 0 || t >= n_vocab) {
                throw InvalidArgument("input " + std::to_string(i) + ": token id " + std::to_string(t) +
                                      " is not in [0, " + std::to_string(n_vocab) + ")");
            }
        }
        if (static_cast<int>(tokens.size()) > n_ctx_) {
            if (!truncate) {
                throw ContextOverflow(static_cast<int>(tokens.size()), n_ctx_);
            }
            tokens.resize(n_ctx_);
        }
    }

    Embeddings out;
    out.n_rows = static_cast<int>(inputs.size());
    out.n_embd = llama_model_n_embd_out(model_->get());
    out.data.assign(static_cast<size_t>(out.n_rows) * out.n_embd, 0.0f);

    std::lock_guard<std::mutex> lock(mutex_);
    Batch batch(n_ctx_, 1);
    int first_row = 0, n_seqs = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const auto& tokens = inputs[i];
        if (n_seqs > 0 && (batch.size() + static_cast<int>(tokens.size()) > n_ctx_ || n_seqs == params_.n_seq_max)) {
            run_batch(batch, n_seqs, out.data.data() + static_cast<size_t>(first_row) * out.n_embd, normalize);
            first_row += n_seqs;
            n_seqs = 0;
        }
        for (size_t p = 0; p < tokens.size(); ++p) {
            batch.add(tokens[p], static_cast<llama_pos>(p), n_seqs, true);
        }
        out.n_tokens += static_cast<int>(tokens.size());
        n_seqs++;
    }
    if (n_seqs > 0) {
        run_batch(batch, n_seqs, out.data.data() + static_cast<size_t>(first_row) * out.n_embd, normalize);
    }
    return out;
}

void Embedder::run_batch(Batch& batch, int n_seqs, float* out, bool normalize) {
    llama_memory_t mem = llama_get_memory(ctx_.get());
    if (mem != nullptr) llama_memory_clear(mem, true);
    const bool encoder_only = model_->has_encoder() && !model_->has_decoder();
    const int ret = encoder_only ? llama_encode(ctx_.get(), batch.get()) : llama_decode(ctx_.get(), batch.get());
    batch.clear();
    if (ret != 0) throw Error("embedding failed: llama.cpp returned " + std::to_string(ret));
    const int n_embd = llama_model_n_embd_out(model_->get());
    for (int s = 0; s < n_seqs; ++s) {
        const float* emb = llama_get_embeddings_seq(ctx_.get(), s);
        if (emb == nullptr) throw Error("llama.cpp returned no embedding for sequence " + std::to_string(s));
        float* row = out + static_cast<size_t>(s) * n_embd;
        std::copy(emb, emb + n_embd, row);
        if (normalize) l2_normalize(row, n_embd);
    }
}

}  // namespace mr
