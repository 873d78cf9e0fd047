// A second, smaller model that drafts for speculative decoding (`mr serve --draft-model`): it
// reads each slot's tokens into a sequence of its own and proposes the next few greedily.
//
// Greedy drafts are fixed guesses given the context, so the engine's "sample, then compare" rule
// stays lossless (mr/drafter.hpp). The draft model's KV cache holds one stream per slot; each
// call first brings a slot's stream up to the slot's tokens (dropping what the target rejected),
// then drafts all asking slots together, one decode per draft position.
#pragma once

#include <memory>
#include <vector>

#include "llama.h"
#include "mr/context.hpp"

namespace mr {

class Model;

class DraftModel {
public:
    struct Ask {
        int seq = 0;                                // the slot
        const std::vector<llama_token>* tokens;     // the slot's prompt and answer so far
        int k = 0;                                  // the longest draft wanted
    };

    // Throws ModelLoadError when the two vocabularies differ (a draft would be meaningless).
    // `deterministic`: the engine's mode; the draft then computes as the model does (reference
    // kernels, flash attention), so a model drafting for itself is never wrong.
    DraftModel(std::shared_ptr<Model> draft, const Model& target, int n_ctx_seq, int n_slots, int n_threads,
               bool deterministic);
    DraftModel(const DraftModel&) = delete;
    DraftModel& operator=(const DraftModel&) = delete;

    // One draft per ask, in order (empty where the stream has no room left).
    std::vector<std::vector<llama_token>> draft(const std::vector<Ask>& asks);
    // Memory of the draft model's weights and KV cache, for the memory budget.
    const Model& model() const { return *model_; }

private:
    void catch_up(const std::vector<Ask>& asks, std::vector<int>& logits_idx);
    llama_token greedy(int logits_idx) const;

    std::shared_ptr<Model> model_;
    ContextPtr ctx_;
    Batch batch_;
    int n_ctx_seq_ = 0;
    std::vector<std::vector<llama_token>> cache_;  // per slot: the tokens in its stream, in order
};

// Throws ModelLoadError unless `draft` tokenizes as `target` does (same type, ids and texts).
void check_same_vocabulary(const Model& draft, const Model& target);

}  // namespace mr
