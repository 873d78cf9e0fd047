#include "mr/drafter.hpp"

#include <algorithm>
#include <cmath>

namespace mr {

size_t common_prefix(const std::vector<llama_token>& a, const std::vector<llama_token>& b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

uint64_t NgramIndex::key(const llama_token* tokens, int n) {
    uint64_t h = static_cast<uint64_t>(n) * 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; ++i) {
        h ^= static_cast<uint32_t>(tokens[i]);
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    return h;
}

void NgramIndex::clear() {
    tokens_.clear();
    for (auto& map : after_) map.clear();
}

void NgramIndex::append(llama_token token) {
    tokens_.push_back(token);
    const int s = static_cast<int>(tokens_.size());
    // The n-grams that end just before `token` now have a follower: it.
    for (int n = kMinN; n <= kMaxN && n < s; ++n) {
        after_[n - kMinN][key(&tokens_[s - 1 - n], n)] = s - 1;
    }
}

void NgramIndex::append(const std::vector<llama_token>& tokens) {
    tokens_.reserve(tokens_.size() + tokens.size());
    for (llama_token t : tokens) append(t);
}

int NgramIndex::find(const llama_token* tokens, int n) const {
    if (n < kMinN || n > kMaxN) return -1;
    const auto& map = after_[n - kMinN];
    const auto it = map.find(key(tokens, n));
    if (it == map.end()) return -1;
    const int after = it->second;
    // A hash collision is not a match.
    return std::equal(tokens, tokens + n, tokens_.begin() + (after - n)) ? after : -1;
}

int NgramIndex::match(const llama_token* seq, int s, int* matched) const {
    for (int n = std::min(kMaxN, s); n >= kMinN; --n) {
        const int after = find(seq + (s - n), n);
        if (after < 0) continue;
        int m = n;  // how far back the two places agree
        while (m < kLongMatch && after - m - 1 >= 0 && m < s && tokens_[after - m - 1] == seq[s - m - 1]) ++m;
        *matched = m;
        return after;
    }
    *matched = 0;
    return -1;
}

std::vector<llama_token> NgramIndex::continuation(int k, int* matched) const {
    const int s = static_cast<int>(tokens_.size());
    int m = 0;
    const int after = match(tokens_.data(), s, &m);
    if (matched != nullptr) *matched = m;
    if (after < 0) return {};
    // Past the sequence's end the draft continues from itself: the two places are `s - after`
    // tokens apart, so the text repeats with that period (a list, a table, code of one shape).
    std::vector<llama_token> out;
    out.reserve(static_cast<size_t>(std::max(k, 0)));
    for (int i = 0; i < k; ++i) {
        const int j = after + i;
        out.push_back(j < s ? tokens_[j] : out[static_cast<size_t>(j - s)]);
    }
    return out;
}

int NgramIndex::follow(const std::vector<llama_token>& seq, int* matched) const {
    return match(seq.data(), static_cast<int>(seq.size()), matched);
}

std::vector<llama_token> NgramIndex::continuation_of(const std::vector<llama_token>& seq, int k, int* matched) const {
    const int after = follow(seq, matched);
    if (after < 0) return {};
    const auto end = std::min(tokens_.size(), static_cast<size_t>(after) + static_cast<size_t>(std::max(k, 0)));
    return std::vector<llama_token>(tokens_.begin() + after, tokens_.begin() + static_cast<long>(end));
}

void NgramMemory::add(NgramIndex&& sequence) {
    const auto& tokens = sequence.tokens();
    if (tokens.empty() || tokens.size() > max_tokens_) return;
    for (const NgramIndex& kept : kept_) {  // n copies of one request leave one
        if (kept.tokens() == tokens) return;
    }
    tokens_ += tokens.size();
    kept_.push_back(std::move(sequence));
    while (tokens_ > max_tokens_ || kept_.size() > max_sequences_) {
        tokens_ -= kept_.front().tokens().size();
        kept_.pop_front();
    }
}

void NgramMemory::sources(std::vector<const NgramIndex*>& out) const {
    for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) out.push_back(&*it);
}

std::vector<llama_token> recall(const std::vector<const NgramIndex*>& sources, const std::vector<llama_token>& seq,
                                int k, int* matched) {
    // Where seq's text is copied, the source that can go on the furthest: a request running beside
    // this one with the same text is no further ahead than this one, while the same request's
    // earlier answer, kept in memory, holds all of it. Elsewhere the longest agreement wins.
    const NgramIndex* best = nullptr;
    int best_matched = 0, best_room = 0;
    for (const NgramIndex* source : sources) {
        int m = 0;
        const int after = source->follow(seq, &m);
        if (after < 0) continue;
        const int room = std::min(k, static_cast<int>(source->tokens().size()) - after);
        const bool long_match = m >= NgramIndex::kLongMatch;
        const bool better = long_match ? best_matched < NgramIndex::kLongMatch || room > best_room : m > best_matched;
        if (!better) continue;
        best = source;
        best_matched = m;
        best_room = room;
        if (long_match && room >= k) break;
    }
    *matched = best_matched;
    return best == nullptr ? std::vector<llama_token>{} : best->continuation_of(seq, k, matched);
}

Prediction::Prediction(std::vector<llama_token> tokens) { index_.append(tokens); }

void Prediction::advance(llama_token token) {
    const auto& p = index_.tokens();
    if (pos_ >= 0 && pos_ < static_cast<int>(p.size()) && p[pos_] == token) {
        ++pos_;
    } else {
        pos_ = -1;
    }
}

std::vector<llama_token> Prediction::draft(const std::vector<llama_token>& answer, int k) {
    const auto& p = index_.tokens();
    const int s = static_cast<int>(answer.size());
    // Lost: the latest place where the answer's last 4 (or 3, or 2) tokens occur.
    for (int n = std::min(NgramIndex::kMaxN, s); pos_ < 0 && n >= NgramIndex::kMinN; --n) {
        pos_ = index_.find(answer.data() + (s - n), n);
    }
    if (pos_ < 0 || pos_ >= static_cast<int>(p.size())) return {};
    const int end = std::min(pos_ + k, static_cast<int>(p.size()));
    return std::vector<llama_token>(p.begin() + pos_, p.begin() + end);
}

void Acceptance::record(int drafted, int accepted) {
    // Discounted, so a slot whose text stops repeating itself stops drafting within a few steps.
    constexpr double kKeep = 0.7;
    accepted_ = accepted_ * kKeep + accepted;
    tried_ = tried_ * kKeep + accepted + (accepted < drafted ? 1 : 0);
}

double Acceptance::expected_extra(int k) const {
    const double p = rate();
    double sum = 0.0, pi = 1.0;
    for (int i = 0; i < k; ++i) {
        pi *= p;
        sum += pi;
    }
    return sum;
}

StepCost::StepCost(int max_tokens)
    : one_(static_cast<size_t>(std::max(max_tokens, kTile)) + 1, -1.0),
      several_(one_.size(), -1.0),
      several_prompts_(one_.size(), -1.0) {}

const double* StepCost::at(int n_tokens, int n_seqs) const {
    if (n_tokens >= kTile) return &(n_seqs <= 1 ? one_ : several_)[static_cast<size_t>(n_tokens)];
    const auto s = static_cast<size_t>(std::max(n_seqs, 1));
    return s < below_.size() && !below_[s].empty() ? below_[s].data() + n_tokens : nullptr;
}

double& StepCost::slot(int n_tokens, int n_seqs) {
    if (n_tokens >= kTile) return (n_seqs <= 1 ? one_ : several_)[static_cast<size_t>(n_tokens)];
    const auto s = static_cast<size_t>(std::max(n_seqs, 1));
    if (below_.size() <= s) below_.resize(s + 1);
    if (below_[s].empty()) below_[s].assign(static_cast<size_t>(kTile), -1.0);
    return below_[s][static_cast<size_t>(n_tokens)];
}

void StepCost::record(int n_tokens, int n_seqs, int n_prompt, double us) {
    if (n_tokens <= 0 || n_tokens >= static_cast<int>(one_.size()) || us <= 0.0) return;
    const bool beside = n_prompt > 0 && n_seqs > 1;  // prompt tokens beside other sequences
    if (beside && n_tokens < kTile) return;
    double& us_at = beside ? several_prompts_[static_cast<size_t>(n_tokens)] : slot(n_tokens, n_seqs);
    us_at = us_at < 0.0 ? us : 0.8 * us_at + 0.2 * us;  // moving average: the context grows, load varies
    if (n_tokens >= kTile) (n_seqs <= 1 ? one_seen_ : several_seen_) = true;
    if (n_seqs > 1 && n_prompt == 0) several_longest_ = std::max(several_longest_, n_tokens);
}

int StepCost::limit(int n_seqs) const {
    const int n_max = static_cast<int>(one_.size()) - 1;
    return n_seqs <= 1 ? n_max : std::min(n_max, 2 * std::max(several_longest_, n_seqs));
}

bool StepCost::known(int n_tokens, int n_seqs) const {
    if (n_tokens <= 0 || n_tokens >= static_cast<int>(one_.size())) return false;
    const double* us = at(n_tokens, n_seqs);
    return us != nullptr && *us >= 0.0;
}

namespace {

// A step of n tokens from the sizes measured in at(first..last) (< 0: not measured): measured,
// interpolated between the nearest two, or extrapolated from the nearest (with the slope of the
// two nearest); 0 when none is measured there.
template <typename At>
double estimate_in(const At& at, int first, int last, int n) {
    int lo = std::min(n, last), hi = std::max(n, first);
    while (lo >= first && at(lo) < 0.0) --lo;
    while (hi <= last && at(hi) < 0.0) ++hi;
    if (lo == n && n >= first) return at(n);  // (n below the range: never measured there)
    const bool below = lo >= first, above = hi <= last;
    if (below && above) return at(lo) + static_cast<double>(n - lo) / (hi - lo) * (at(hi) - at(lo));
    if (below) {
        int lo2 = lo - 1;
        while (lo2 >= first && at(lo2) < 0.0) --lo2;
        // With one size measured, assume a token more costs 3% of it, or half its cost per token
        // where that is less: optimistic, so the engine tries a longer step once and then knows.
        // (3% alone priced a token past a measured 64-row step of 4 sequences at 9 ms, twice what
        // one costs, so their steps never grew past 64 rows however many drafts were kept.)
        const double slope = lo2 >= first ? std::max((at(lo) - at(lo2)) / (lo - lo2), 0.0)
                                          : std::min(0.03 * at(lo), 0.5 * at(lo) / lo);
        return at(lo) + slope * (n - lo);
    }
    // Only a larger step measured: its cost per token, an optimistic figure (a smaller step costs
    // no less per token), so the engine tries this size once and then knows. The larger step's
    // whole cost (243 tokens, say, for a 65-token draft) kept long drafts from ever being tried.
    return above ? at(hi) * n / hi : 0.0;
}

}  // namespace

double StepCost::estimate(int n_tokens, int n_seqs) const {
    const int n_max = static_cast<int>(one_.size()) - 1;
    n_tokens = std::clamp(n_tokens, 1, n_max);
    // The tiled sizes of this many sequences; where none is measured yet, the other kind's stand
    // in (optimistic on purpose: the engine tries such a step once, then knows). Several
    // sequences' prompt steps stand in at sizes no drafting step has measured.
    const bool several = n_seqs > 1 ? several_seen_ : several_seen_ && !one_seen_;
    const auto above = [&](int i) {
        const auto at = static_cast<size_t>(i);
        if (!several) return one_[at];
        return several_[at] >= 0.0 ? several_[at] : several_prompts_[at];
    };
    // One curve across the tile: a size under it lies between measured sizes on either side (a
    // 39-token draft between 6 and 64 tokens), rather than on the slope of its two nearest
    // small steps, which on a CPU whose small steps cost a token each priced it far too high.
    const double* small = at(0, n_seqs);  // this many sequences' sizes under the tile, if any
    const auto curve = [&](int i) { return i >= kTile ? above(i) : small != nullptr ? small[i] : -1.0; };
    if (n_tokens < kTile) return estimate_in(curve, 1, n_max, n_tokens);
    const double us = estimate_in(above, kTile, n_max, n_tokens);
    return us > 0.0 ? us : estimate_in(curve, 1, n_max, n_tokens);
}

std::vector<int> plan_draft_lengths(const StepCost& cost, const std::vector<const Acceptance*>& acceptance,
                                    const std::vector<int>& k_max, int n_tokens, int room) {
    const size_t n = acceptance.size();
    const int n_seqs = static_cast<int>(n);
    std::vector<int> k(n, 0), best(n, 0);
    if (n == 0 || !cost.known(n_tokens, n_seqs)) return best;  // the step's size without drafts comes first
    std::vector<double> rate(n), next(n);  // each slot's acceptance; the chance its next draft token is kept
    int wanted = 0;
    for (size_t i = 0; i < n; ++i) {
        rate[i] = acceptance[i]->rate();
        next[i] = rate[i];
        wanted += k_max[i];
    }
    room = std::min({room, wanted, cost.limit(n_seqs) - n_tokens});
    // Adding draft tokens one at a time where the next one is likeliest kept gives, for each total,
    // the most tokens expected (a slot's chances fall along its draft); the best total wins.
    double out = static_cast<double>(n);
    double best_value = out / cost.estimate(n_tokens, n_seqs) * 1.02;  // timing noise is not a gain
    for (int total = 1; total <= room; ++total) {
        size_t pick = n;
        for (size_t i = 0; i < n; ++i) {
            if (k[i] < k_max[i] && (pick == n || next[i] > next[pick])) pick = i;
        }
        out += next[pick];
        next[pick] *= rate[pick];
        ++k[pick];
        const double value = out / cost.estimate(n_tokens + total, n_seqs);
        if (value > best_value) {
            best_value = value;
            best = k;
        }
    }
    return best;
}

}  // namespace mr
