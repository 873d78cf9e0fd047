// Per-sequence sampling: a llama_sampler chain built from one request's parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "llama.h"

namespace mr {

class Model;

struct SamplingParams {
    float temperature = 0.8f;  // <= 0: greedy
    int top_k = 40;            // <= 0: off
    float top_p = 0.95f;       // >= 1: off
    float min_p = 0.05f;       // <= 0: off
    uint32_t seed = LLAMA_DEFAULT_SEED;  // LLAMA_DEFAULT_SEED: a random seed
    float repeat_penalty = 1.0f;         // 1: off
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    int penalty_last_n = 64;
    std::vector<std::pair<llama_token, float>> logit_bias;
    std::string grammar;  // GBNF; "" = unconstrained
    bool grammar_lazy = false;  // the grammar applies only once a trigger appears
    std::vector<std::string> trigger_patterns;  // regular expressions over the output
    std::vector<llama_token> trigger_tokens;
    // Text the prompt already ends with that a (non-lazy) chat grammar starts with: fed to the
    // grammar before sampling so it begins where the model does.
    std::string grammar_prefill;
    // A cap on thinking: after `reasoning_budget` tokens between `reasoning_start` and one of
    // `reasoning_end`, the first end tag is forced. -1: no cap. `reasoning_prefill` is the prompt's
    // tail (it may already open the thinking block).
    int reasoning_budget = -1;
    std::string reasoning_start;
    std::vector<std::string> reasoning_end;
    std::string reasoning_prefill;
};

struct SamplerDeleter {
    void operator()(llama_sampler* s) const { llama_sampler_free(s); }
};

class Sampler {
public:
    // Validates every value (throws InvalidArgument) before building the chain.
    Sampler(const Model& model, const SamplingParams& params);

    // Samples from the logits of batch output `idx` and accepts the token into the chain's state.
    llama_token sample(llama_context* ctx, int32_t idx);
    // Feed a token the chain did not pick (e.g. a prompt token for the repeat penalties).
    void accept(llama_token token);

private:
    // The fast paths skip llama_sampler_sample's copy of every logit into a candidate array
    // (the vocabulary is 49k-256k entries; that copy and the sorts after it are a visible part
    // of a small model's decode step): greedy is an argmax over the logits, and a
    // chain that starts with top-k runs unchanged on the k best candidates picked in one pass.
    enum class Path { Chain, Argmax, TopK };
    llama_token sample_top_k(const float* logits);

    std::unique_ptr<llama_sampler, SamplerDeleter> chain_;
    Path path_ = Path::Chain;
    int32_t n_vocab_ = 0;
    int32_t top_k_ = 0;
    std::vector<llama_token_data> candidates_;  // reused by the top-k path
};

void validate(const Model& model, const SamplingParams& params);

// The index of the first largest of n values (n > 0): std::max_element's answer, NaNs included,
// in SSE2 vectors where the CPU has them. Greedy decoding runs it over the vocabulary per token.
int32_t first_argmax(const float* values, int32_t n);

}  // namespace mr
