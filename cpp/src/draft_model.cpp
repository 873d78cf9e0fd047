#include "mr/draft_model.hpp"

#include <algorithm>
#include <string>

#include "mr/drafter.hpp"
#include "mr/errors.hpp"
#include "mr/model.hpp"
#include "mr/sampler.hpp"

namespace mr {
namespace {

constexpr int kBatch = 512;

llama_context_params draft_params(int n_ctx_seq, int n_slots, int n_threads, bool deterministic) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(n_ctx_seq) * static_cast<uint32_t>(n_slots);
    cp.n_seq_max = static_cast<uint32_t>(n_slots);
    cp.n_batch = kBatch;
    cp.n_ubatch = kBatch;
    cp.n_threads = n_threads > 0 ? n_threads : default_threads();
    cp.n_threads_batch = cp.n_threads;
    cp.kv_unified = false;  // one stream per slot: a slot's drafts never touch another's cells
    cp.no_perf = true;
    if (deterministic) cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    return cp;
}

}  // namespace

void check_same_vocabulary(const Model& draft, const Model& target) {
    const llama_vocab* a = draft.vocab();
    const llama_vocab* b = target.vocab();
    std::string why;
    if (llama_vocab_type(a) != llama_vocab_type(b)) {
        why = "another tokenizer type";
    } else if (draft.n_vocab() != target.n_vocab()) {
        why = std::to_string(draft.n_vocab()) + " tokens, the model " + std::to_string(target.n_vocab());
    } else if (draft.bos() != target.bos() || draft.eos() != target.eos()) {
        why = "other BOS/EOS tokens";
    } else {
        for (llama_token t = 0; t < target.n_vocab(); ++t) {
            if (std::string(llama_vocab_get_text(a, t)) != llama_vocab_get_text(b, t)) {
                why = "token " + std::to_string(t) + " differs";
                break;
            }
        }
    }
    if (!why.empty()) {
        throw ModelLoadError("the draft model's vocabulary is not the model's (" + why +
                             "): a draft model must tokenize exactly as the model does");
    }
}

DraftModel::DraftModel(std::shared_ptr<Model> draft, const Model& target, int n_ctx_seq, int n_slots,
                       int n_threads, bool deterministic)
    : model_(std::move(draft)),
      ctx_(make_context(*model_, draft_params(n_ctx_seq, n_slots, n_threads, deterministic))),
      batch_(kBatch, 1),
      n_ctx_seq_(n_ctx_seq),
      cache_(static_cast<size_t>(n_slots)) {
    check_same_vocabulary(*model_, target);
    if (deterministic) llama_set_reference_kernels(ctx_.get(), true);
}

llama_token DraftModel::greedy(int logits_idx) const {
    const float* logits = llama_get_logits_ith(ctx_.get(), logits_idx);
    return static_cast<llama_token>(first_argmax(logits, model_->n_vocab()));
}

// Each asking slot's stream is made to hold exactly its tokens: the part the stream shares with
// them stays, the rest (the target's rejections, another request's tokens) is dropped, and the
// missing tokens are decoded, the last one of each slot in a final step that yields its logits.
void DraftModel::catch_up(const std::vector<Ask>& asks, std::vector<int>& logits_idx) {
    llama_memory_t mem = llama_get_memory(ctx_.get());
    auto flush = [&] {
        if (batch_.size() > 0 && llama_decode(ctx_.get(), batch_.get()) != 0) {
            throw Error("the draft model could not decode");
        }
        batch_.clear();
    };
    batch_.clear();
    for (const Ask& ask : asks) {
        auto& cache = cache_[static_cast<size_t>(ask.seq)];
        const auto& tokens = *ask.tokens;
        const size_t keep = std::min(common_prefix(cache, tokens), tokens.size() - 1);
        llama_memory_seq_rm(mem, ask.seq, static_cast<llama_pos>(keep), -1);
        cache.resize(keep);
        for (size_t i = keep; i + 1 < tokens.size(); ++i) {  // all but the last: no logits needed
            if (batch_.size() == kBatch) flush();
            batch_.add(tokens[i], static_cast<llama_pos>(i), ask.seq, false);
            cache.push_back(tokens[i]);
        }
    }
    flush();
    for (size_t j = 0; j < asks.size(); ++j) {
        auto& cache = cache_[static_cast<size_t>(asks[j].seq)];
        logits_idx[j] = batch_.add(asks[j].tokens->back(), static_cast<llama_pos>(cache.size()), asks[j].seq, true);
        cache.push_back(asks[j].tokens->back());
    }
    if (llama_decode(ctx_.get(), batch_.get()) != 0) throw Error("the draft model could not decode");
}

std::vector<std::vector<llama_token>> DraftModel::draft(const std::vector<Ask>& asks) {
    std::vector<std::vector<llama_token>> out(asks.size());
    std::vector<Ask> live;
    std::vector<size_t> live_of;
    for (size_t j = 0; j < asks.size(); ++j) {
        const int room = n_ctx_seq_ - static_cast<int>(asks[j].tokens->size()) - 1;
        if (asks[j].k <= 0 || room <= 0 || asks[j].tokens->empty()) continue;
        live.push_back(asks[j]);
        live.back().k = std::min(asks[j].k, room);
        live_of.push_back(j);
    }
    if (live.empty()) return out;
    std::vector<int> idx(live.size(), -1);
    catch_up(live, idx);
    const int k_max = std::max_element(live.begin(), live.end(), [](const Ask& a, const Ask& b) {
                          return a.k < b.k;
                      })->k;
    for (int i = 0; i < k_max; ++i) {
        batch_.clear();
        for (size_t j = 0; j < live.size(); ++j) {
            if (idx[j] < 0) continue;
            const llama_token t = greedy(idx[j]);
            auto& drafted = out[live_of[j]];
            drafted.push_back(t);
            idx[j] = -1;
            if (static_cast<int>(drafted.size()) >= live[j].k || model_->is_eog(t)) continue;
            auto& cache = cache_[static_cast<size_t>(live[j].seq)];
            idx[j] = batch_.add(t, static_cast<llama_pos>(cache.size()), live[j].seq, true);
            cache.push_back(t);
        }
        if (batch_.size() == 0) break;
        if (llama_decode(ctx_.get(), batch_.get()) != 0) throw Error("the draft model could not decode");
    }
    return out;
}

}  // namespace mr
