#include "mr/embedder.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "mr/errors.hpp"
#include "mr/model.hpp"

namespace mr {
namespace {

constexpr int kCellStep = 256;  // llama.cpp pads every context's KV cache to a multiple of this

int round_up(int n, int step) { return (n + step - 1) / step * step; }

// The tokens one batch holds, for a requested context of n_ctx. A whole input must fit one
// micro-batch (non-causal models need it; pooling over several would keep only the last part),
// so micro-batch = batch = context, and two llama.cpp rules shape it. It allocates KV cells in
// steps of 256 but caps the batch at the context as requested: asking for the padded size
// makes both agree. And when it reserves the compute graph it rounds the micro-batch up to a
// multiple of n_seq_max while keeping one output per token of the unrounded size: with mean
// pooling that multiplies mismatched matrices, GGML_ASSERT(ggml_can_mul_mat(a, b)), an abort
// (a context size of 1000 with 32 inputs per batch was enough).
int batch_window(const EmbedderParams& p) {
    return round_up(round_up(p.n_ctx, kCellStep), p.n_seq_max);
}

llama_context_params embedding_params(const EmbedderParams& p, enum llama_pooling_type pooling) {
    llama_context_params cp = llama_context_default_params();
    cp.embeddings = true;
    cp.pooling_type = pooling;
    const int window = batch_window(p);
    cp.n_ctx = window;
    cp.n_batch = window;
    cp.n_ubatch = window;
    cp.n_seq_max = p.n_seq_max;
    cp.kv_unified = true;
    cp.n_threads = p.n_threads > 0 ? p.n_threads : default_threads();
    cp.n_threads_batch = cp.n_threads;
    cp.no_perf = true;
    return cp;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
        s.replace(pos, from.size(), to);
    }
}

// llama.cpp's own conditions for reranking (common_init_from_params): without them the pair
// cannot be laid out and the scores would mean nothing.
void check_can_rerank(const Model& model) {
    const llama_vocab* vocab = model.vocab();
    const bool has_template = llama_model_chat_template(model.get(), "rerank") != nullptr;
    if (!has_template && llama_vocab_bos(vocab) == LLAMA_TOKEN_NULL) {
        throw InvalidArgument("this model cannot rerank: its vocabulary has no BOS token");
    }
    if (!has_template && llama_vocab_eos(vocab) == LLAMA_TOKEN_NULL && llama_vocab_sep(vocab) == LLAMA_TOKEN_NULL) {
        throw InvalidArgument("this model cannot rerank: its vocabulary has neither EOS nor SEP tokens");
    }
    if (llama_model_n_cls_out(model.get()) == 0) throw InvalidArgument("this model cannot rerank: no classifier outputs");
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
    if (params_.rank) {
        check_can_rerank(*model_);
        ctx_ = make_context(*model_, embedding_params(params_, LLAMA_POOLING_TYPE_RANK));
    } else {
        ctx_ = make_context(*model_, embedding_params(params_, LLAMA_POOLING_TYPE_UNSPECIFIED));
        const auto own = llama_pooling_type(ctx_.get());
        // A generative model has no pooling of its own, and a reranker's pools into its
        // classifier's few outputs: one vector per input needs mean pooling.
        if (own == LLAMA_POOLING_TYPE_NONE || own == LLAMA_POOLING_TYPE_RANK) {
            ctx_.reset();
            ctx_ = make_context(*model_, embedding_params(params_, LLAMA_POOLING_TYPE_MEAN));
        }
    }
    llama_set_abort_callback(ctx_.get(), &Embedder::aborting, this);
    pooling_ = llama_pooling_type(ctx_.get());
    // The longest input: what one micro-batch holds (a longer batch would abort in llama_decode).
    n_ctx_ = static_cast<int>(std::min({llama_n_ctx(ctx_.get()), llama_n_batch(ctx_.get()), llama_n_ubatch(ctx_.get())}));
}

int Embedder::n_out() const {
    return params_.rank ? static_cast<int>(llama_model_n_cls_out(model_->get())) : llama_model_n_embd_out(model_->get());
}

std::vector<llama_token> Embedder::checked(std::vector<llama_token> tokens, size_t index, bool truncate) const {
    if (tokens.empty()) throw InvalidArgument("input " + std::to_string(index) + " is empty");
    if (static_cast<int>(tokens.size()) > n_ctx_) {
        if (!truncate) throw ContextOverflow(static_cast<int>(tokens.size()), n_ctx_);
        tokens.resize(n_ctx_);
    }
    return tokens;
}

Embeddings Embedder::embed(const std::vector<std::string>& texts, bool normalize, bool truncate) {
    if (params_.rank) throw InvalidArgument("this model runs in reranking mode: it scores pairs, it does not embed");
    const uint64_t epoch = cancels_.load();  // a cancel() from here on ends this call, tokenizing included
    std::vector<std::vector<llama_token>> inputs;
    inputs.reserve(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
        throw_if_cancelled_since(epoch);
        inputs.push_back(checked(model_->tokenize(texts[i], true, false), i, truncate));
    }
    return run(std::move(inputs), normalize, epoch);
}

Embeddings Embedder::embed_tokens(std::vector<std::vector<int32_t>> inputs, bool normalize, bool truncate) {
    if (params_.rank) throw InvalidArgument("this model runs in reranking mode: it scores pairs, it does not embed");
    const uint64_t epoch = cancels_.load();
    const int n_vocab = model_->n_vocab();
    for (size_t i = 0; i < inputs.size(); ++i) {
        for (const int32_t t : inputs[i]) {
            if (t < 0 || t >= n_vocab) {
                throw InvalidArgument("input " + std::to_string(i) + ": token id " + std::to_string(t) +
                                      " is not in [0, " + std::to_string(n_vocab) + ")");
            }
        }
        inputs[i] = checked(std::move(inputs[i]), i, truncate);
    }
    return run(std::move(inputs), normalize, epoch);
}

Embeddings Embedder::rerank(const std::string& query, const std::vector<std::string>& documents, bool truncate) {
    if (!params_.rank) throw InvalidArgument("this model does not run in reranking mode");
    const uint64_t epoch = cancels_.load();
    std::vector<std::vector<llama_token>> inputs;
    inputs.reserve(documents.size());
    for (size_t i = 0; i < documents.size(); ++i) {
        throw_if_cancelled_since(epoch);
        inputs.push_back(checked(rerank_pair(query, documents[i]), i, truncate));
    }
    return run(std::move(inputs), false, epoch);
}

std::vector<llama_token> Embedder::rerank_pair(const std::string& query, const std::string& document) const {
    const char* tmpl = llama_model_chat_template(model_->get(), "rerank");
    if (tmpl != nullptr) {
        std::string prompt = tmpl;
        replace_all(prompt, "{query}", query);
        replace_all(prompt, "{document}", document);
        return model_->tokenize(prompt, false, true);
    }
    const llama_vocab* vocab = model_->vocab();
    llama_token eos = llama_vocab_eos(vocab);
    if (eos == LLAMA_TOKEN_NULL) eos = llama_vocab_sep(vocab);
    std::vector<llama_token> out;
    if (llama_vocab_get_add_bos(vocab)) out.push_back(llama_vocab_bos(vocab));
    const auto q = model_->tokenize(query, false, false);
    out.insert(out.end(), q.begin(), q.end());
    if (llama_vocab_get_add_eos(vocab)) out.push_back(eos);
    if (llama_vocab_get_add_sep(vocab)) out.push_back(llama_vocab_sep(vocab));
    const auto d = model_->tokenize(document, false, false);
    out.insert(out.end(), d.begin(), d.end());
    if (llama_vocab_get_add_eos(vocab)) out.push_back(eos);
    return out;
}

void Embedder::cancel(const std::string& why) {
    {
        std::lock_guard<std::mutex> lock(why_mutex_);
        why_ = why;
    }
    cancels_.fetch_add(1);
}

bool Embedder::cancelled() const {
    return cancels_.load(std::memory_order_relaxed) != epoch_.load(std::memory_order_relaxed);
}

bool Embedder::aborting(void* self) { return static_cast<const Embedder*>(self)->cancelled(); }

void Embedder::throw_if_cancelled() const { throw_if_cancelled_since(epoch_.load(std::memory_order_relaxed)); }

void Embedder::throw_if_cancelled_since(uint64_t epoch) const {
    if (cancels_.load(std::memory_order_relaxed) == epoch) return;
    std::lock_guard<std::mutex> lock(why_mutex_);
    throw Cancelled("the embedding was cancelled: " + why_);
}

// `epoch`: cancels_ when the call began (before tokenizing): a cancel() since then, while it
// tokenized or waited for the context, ends it too.
Embeddings Embedder::run(std::vector<std::vector<llama_token>> inputs, bool normalize, uint64_t epoch) {
    Embeddings out;
    out.n_rows = static_cast<int>(inputs.size());
    out.n_embd = n_out();
    out.data.assign(static_cast<size_t>(out.n_rows) * out.n_embd, 0.0f);

    std::lock_guard<std::mutex> lock(mutex_);
    const ParkedAfter parked{ctx_};  // however the call ends, the pool's threads then sleep
    epoch_.store(epoch);
    throw_if_cancelled();
    Batch batch(n_ctx_, 1);
    int first_row = 0, n_seqs = 0;
    for (const auto& tokens : inputs) {
        if (n_seqs > 0 && (batch.size() + static_cast<int>(tokens.size()) > n_ctx_ || n_seqs == params_.n_seq_max)) {
            run_batch(batch, n_seqs, out.data.data() + static_cast<size_t>(first_row) * out.n_embd, normalize);
            out.n_batches++;
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
        out.n_batches++;
    }
    return out;
}

void Embedder::run_batch(Batch& batch, int n_seqs, float* out, bool normalize) {
    llama_memory_t mem = llama_get_memory(ctx_.get());
    if (mem != nullptr) llama_memory_clear(mem, true);
    const bool encoder_only = model_->has_encoder() && !model_->has_decoder();
    const int ret = encoder_only ? llama_encode(ctx_.get(), batch.get()) : llama_decode(ctx_.get(), batch.get());
    batch.clear();
    throw_if_cancelled();  // an aborted compute returns non-zero: say why
    if (ret != 0) throw Error("embedding failed: llama.cpp returned " + std::to_string(ret));
    const int n_embd = n_out();
    for (int s = 0; s < n_seqs; ++s) {
        const float* emb = llama_get_embeddings_seq(ctx_.get(), s);
        if (emb == nullptr) throw Error("llama.cpp returned no embedding for sequence " + std::to_string(s));
        float* row = out + static_cast<size_t>(s) * n_embd;
        std::copy(emb, emb + n_embd, row);
        if (normalize) l2_normalize(row, n_embd);
    }
}

}  // namespace mr
