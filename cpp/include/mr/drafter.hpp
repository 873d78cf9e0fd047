// Speculative decoding's parts that need no llama context: where drafts come from (n-gram lookup
// in a sequence's own tokens, a request's predicted output), how long a draft should be (each
// slot's measured acceptance against the engine's measured step cost), and the counts.
//
// A draft is verified by the target model in the same step as the slot's next token; the engine
// samples each position with the slot's own sampler and keeps the draft up to the first token the
// sampler did not pick. A draft is a fixed guess (a point mass), so "sample, then compare" is the
// standard speculative-sampling rule for it: the output distribution is the model's at any
// temperature, and at temperature 0 the tokens are its greedy choices.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "llama.h"

namespace mr {

// How many leading tokens two sequences share (the prefix cache, a draft stream's catch-up).
size_t common_prefix(const std::vector<llama_token>& a, const std::vector<llama_token>& b);

// The tokens of one sequence, indexed by their 2-, 3- and 4-token n-grams: for each n-gram, the
// position right after its latest occurrence. Appending is O(1); so is a lookup.
class NgramIndex {
public:
    static constexpr int kMinN = 2;
    static constexpr int kMaxN = 4;

    void clear();
    void append(llama_token token);
    void append(const std::vector<llama_token>& tokens);
    const std::vector<llama_token>& tokens() const { return tokens_; }
    // The position after the latest occurrence of tokens[0, n) (kMinN <= n <= kMaxN) that is
    // followed by at least one token, or -1.
    int find(const llama_token* tokens, int n) const;
    // Up to k tokens that followed the latest earlier occurrence of the longest suffix of the
    // indexed sequence (n-gram prompt lookup); empty when no suffix occurred before. `matched`
    // gets how many tokens before the draft agree with the sequence's last ones (up to kLongMatch):
    // a text being copied matches for dozens of tokens, a chance bigram for two.
    std::vector<llama_token> continuation(int k, int* matched = nullptr) const;
    static constexpr int kLongMatch = 16;

private:
    static uint64_t key(const llama_token* tokens, int n);
    std::vector<llama_token> tokens_;
    std::unordered_map<uint64_t, int32_t> after_[kMaxN - kMinN + 1];
};

// One request's predicted output (OpenAI Predicted Outputs): drafts follow it while the answer
// does, and pick it up again where the answer's last tokens occur in it.
class Prediction {
public:
    Prediction() = default;
    explicit Prediction(std::vector<llama_token> tokens);
    bool empty() const { return index_.tokens().empty(); }
    // The answer produced `token`: follow the prediction, or lose the place in it.
    void advance(llama_token token);
    // Up to k tokens of the prediction from the answer's place in it; `answer` is the answer so
    // far (for finding the place again after a divergence).
    std::vector<llama_token> draft(const std::vector<llama_token>& answer, int k);

private:
    NgramIndex index_;
    int pos_ = 0;  // the next predicted token, or -1 where the answer left the prediction
};

// Per-slot acceptance: a discounted count of drafted tokens accepted and rejected.
class Acceptance {
public:
    explicit Acceptance(double prior = 0.6) : prior_(prior) {}
    void record(int drafted, int accepted);
    // The chance that the next drafted token is accepted, given the ones before it were.
    double rate() const { return (accepted_ + 2.0 * prior_) / (tried_ + 2.0); }
    // Tokens a draft of k adds to the step's one sampled token, on average.
    double expected_extra(int k) const;

private:
    double prior_;
    double accepted_ = 0.0, tried_ = 0.0;
};

// The engine's decode time by the number of tokens in the step, measured as it runs (steps of
// other sizes interpolated), so each machine's own kernels decide when a longer step pays.
class StepCost {
public:
    explicit StepCost(int max_tokens);
    void record(int n_tokens, double us);
    bool known(int n_tokens) const;
    // Microseconds of a step of n tokens: measured, interpolated, or (above the largest measured
    // size) extrapolated from the measured slope; 0 when nothing has been measured.
    double estimate(int n_tokens) const;

private:
    std::vector<double> us_;  // index: tokens in the step; < 0: not measured yet
};

// The draft length that maximises tokens per microsecond for a slot whose step would hold
// `n_tokens` tokens now producing `n_out` tokens (0: drafting does not pay).
int best_draft_length(const StepCost& cost, const Acceptance& acceptance, int n_tokens, double n_out,
                      int k_max);

}  // namespace mr
