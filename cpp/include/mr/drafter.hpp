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
#include <deque>
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
    // The same lookup for another sequence's suffix `seq` in this one's tokens: what followed
    // here, up to this sequence's end.
    std::vector<llama_token> continuation_of(const std::vector<llama_token>& seq, int k, int* matched) const;
    // Where that lookup lands: the position after the match here, or -1; `matched` as above.
    int follow(const std::vector<llama_token>& seq, int* matched) const;
    static constexpr int kLongMatch = 16;

private:
    // Where the longest suffix of seq[0, s) (kMinN to kMaxN tokens) last occurred in this index,
    // followed by a token (the position after it, or -1), and how many tokens agree there.
    int match(const llama_token* seq, int s, int* matched) const;
    static uint64_t key(const llama_token* tokens, int n);
    std::vector<llama_token> tokens_;
    std::unordered_map<uint64_t, int32_t> after_[kMaxN - kMinN + 1];
};

// Earlier requests' tokens (prompt and answer), kept after their slots take new requests: a
// request that repeats one (the same question again, a file edited again, a retried call) drafts
// the earlier answer from its first tokens, as llama-server's ngram-mod does with its table shared
// by all requests. The model verifies every draft, so another request's tokens change how fast an
// answer comes, never what it is.
class NgramMemory {
public:
    explicit NgramMemory(size_t max_tokens = size_t{1} << 16, size_t max_sequences = 32)
        : max_tokens_(max_tokens), max_sequences_(max_sequences) {}
    // Keeps `sequence` (moved in) unless the same tokens are kept already; the oldest go first.
    void add(NgramIndex&& sequence);
    // Appends the kept sequences, newest first, to `out` (for recall).
    void sources(std::vector<const NgramIndex*>& out) const;
    size_t size() const { return kept_.size(); }

private:
    size_t max_tokens_, max_sequences_;
    size_t tokens_ = 0;
    std::deque<NgramIndex> kept_;  // oldest first
};

// Up to k tokens that followed the best match of seq's suffix in `sources`: among long matches
// (NgramIndex::kLongMatch tokens agreeing) the one with the most tokens after it, else the most
// tokens agreeing; the first of equals. `matched` as in NgramIndex::continuation.
std::vector<llama_token> recall(const std::vector<const NgramIndex*>& sources, const std::vector<llama_token>& seq,
                                int k, int* matched);

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
    Acceptance() = default;
    explicit Acceptance(double prior) : prior_(prior) {}
    void record(int drafted, int accepted);
    // The chance that the next drafted token is accepted, given the ones before it were.
    double rate() const { return (accepted_ + 2.0 * prior_) / (tried_ + 2.0); }
    // Tokens a draft of k adds to the step's one sampled token, on average.
    double expected_extra(int k) const;

private:
    double prior_ = 0.6;
    double accepted_ = 0.0, tried_ = 0.0;
};

// The engine's decode time by the number of tokens in the step, measured as it runs (steps of
// other sizes interpolated), so each machine's own kernels decide when a longer step pays.
//
// At kTile tokens a CPU's kernels change (ggml's flash attention and matrix products take 64-row
// tiles): a step of one sequence gets cheaper per token there, while in a step of several
// sequences each tile's rows attend to every cell that any of them sees, so it may get dearer.
// So sizes from kTile up are kept apart for one sequence and for several (where one kind has no
// measurement yet, the other's stand in). A size from kTile up is estimated from that side
// alone; a size under it from the whole curve, so a draft between the measured small steps and
// the first tiled one is priced between them. Unmeasured sizes are priced optimistically: the
// engine tries one once, then knows it.
//
// A step of prompt tokens beside other sequences is not a step a draft makes: a prompt token
// computes no logits and attends only to the cells before it in a new sequence, while the others'
// tokens attend to their whole context, so the step costs less per token than a drafting step of
// its size. Counted as drafts' cost, a 7-slot step with a 47-token prompt (54 tokens, 8
// sequences) priced drafting steps of that size at two thirds of their cost (measured on 8
// unrelated chats: 264 ms estimated, 384 ms taken), so long drafts that lost looked worth taking.
// So such steps count only from kTile up, and only at sizes no draft has measured: the tiled
// kernels' first measure, before a long draft tries them. One sequence's prompt alone counts as
// before: its tokens attend to the same cells as its drafts will.
//
// Trying an unmeasured size once is cheap for one sequence (a step of 64 tokens costs a few of
// one) but not for several, whose steps grow about a row's cost per token on a small CPU: 8
// unrelated chats, four of them recalling 64 tokens of other stories after 16-token matches,
// made a 264-token step that kept 22 (traced on a loaded 2-core host). So a step of several
// sequences goes at most to twice the longest such step measured (drafts, not prompts): a wrong
// price costs at most one step of twice a known size, and the next is priced from measurements.
//
// Sizes under kTile are kept per number of sequences. A CPU's small steps do not cost a token a
// row: on a 2-core Zen 3, 4 sequences took 25-30 ms, 5 took 42-46 and 8 took 47-52, and one
// draft token beside 8 sequences added a third to a half of the step. One curve by size alone
// mixed one sequence's cheap 12-row drafts with 8 sequences' (93 ms taken, 77 estimated), so
// drafts beside many sequences looked cheaper than they were and lost. Each count's plain step is
// measured before it drafts at all; a size it has not measured is priced from its own curve, up
// to the tiled steps, which several sequences share.
class StepCost {
public:
    static constexpr int kTile = 64;
    explicit StepCost(int max_tokens);
    // A step of n_tokens from n_seqs sequences, n_prompt of the tokens from prompts, took us.
    void record(int n_tokens, int n_seqs, int n_prompt, double us);
    bool known(int n_tokens, int n_seqs) const;
    // The longest step of n_seqs sequences that may be taken now (see above).
    int limit(int n_seqs) const;
    // Microseconds of a step of n tokens from n_seqs sequences: measured, interpolated, or
    // extrapolated from the measured slope; 0 when nothing has been measured.
    double estimate(int n_tokens, int n_seqs) const;

private:
    // The measure of a step of n_tokens from n_seqs sequences (< 0: none), or nullptr where
    // nothing of that many sequences is measured yet.
    const double* at(int n_tokens, int n_seqs) const;
    double& slot(int n_tokens, int n_seqs);  // that measure, to update (made where missing)
    // Index: tokens in the step; < 0: not measured yet. below_[s] holds the sizes under kTile of
    // s sequences (empty until one is measured); several_prompts_ the tiled steps of prompts
    // beside other sequences.
    std::vector<std::vector<double>> below_;
    std::vector<double> one_, several_, several_prompts_;
    bool one_seen_ = false, several_seen_ = false;  // a tiled size measured there
    int several_longest_ = 0;                       // the longest step of several sequences' drafts
};

// Draft lengths for the slots of one step, each drafting with its `acceptance` up to `k_max[i]`
// tokens, `room` in all. The step holds `n_tokens` tokens (one per slot) without drafts; draft
// tokens go where they are likeliest kept, as many in all as maximise the expected tokens per
// microsecond (all zero: drafting does not pay).
std::vector<int> plan_draft_lengths(const StepCost& cost, const std::vector<const Acceptance*>& acceptance,
                                    const std::vector<int>& k_max, int n_tokens, int room);

}  // namespace mr
