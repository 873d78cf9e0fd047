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

std::vector<llama_token> NgramIndex::continuation(int k, int* matched) const {
    const int s = static_cast<int>(tokens_.size());
    for (int n = std::min(kMaxN, s); n >= kMinN; --n) {
        const int after = find(&tokens_[s - n], n);
        if (after < 0) continue;
        if (matched != nullptr) {  // how far back the two places agree
            int m = n;
            while (m < kLongMatch && after - m - 1 >= 0 && tokens_[after - m - 1] == tokens_[s - m - 1]) ++m;
            *matched = m;
        }
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
    return {};
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

StepCost::StepCost(int max_tokens) : us_(static_cast<size_t>(std::max(max_tokens, 1)) + 1, -1.0) {}

void StepCost::record(int n_tokens, double us) {
    if (n_tokens <= 0 || n_tokens >= static_cast<int>(us_.size()) || us <= 0.0) return;
    double& slot = us_[n_tokens];
    slot = slot < 0.0 ? us : 0.8 * slot + 0.2 * us;  // moving average: the context grows, load varies
}

bool StepCost::known(int n_tokens) const {
    return n_tokens > 0 && n_tokens < static_cast<int>(us_.size()) && us_[n_tokens] >= 0.0;
}

double StepCost::estimate(int n_tokens) const {
    const int n_max = static_cast<int>(us_.size()) - 1;
    n_tokens = std::clamp(n_tokens, 1, n_max);
    if (us_[n_tokens] >= 0.0) return us_[n_tokens];
    int lo = n_tokens - 1, hi = n_tokens + 1;
    while (lo >= 1 && us_[lo] < 0.0) --lo;
    while (hi <= n_max && us_[hi] < 0.0) ++hi;
    if (lo >= 1 && hi <= n_max) {
        const double t = static_cast<double>(n_tokens - lo) / (hi - lo);
        return us_[lo] + t * (us_[hi] - us_[lo]);
    }
    if (lo >= 1) {
        int lo2 = lo - 1;
        while (lo2 >= 1 && us_[lo2] < 0.0) --lo2;
        // With one size measured, assume a token more costs 3% of it: optimistic, so the engine
        // tries a longer step once and then knows.
        const double slope = lo2 >= 1 ? std::max((us_[lo] - us_[lo2]) / (lo - lo2), 0.0) : 0.03 * us_[lo];
        return us_[lo] + slope * (n_tokens - lo);
    }
    return hi <= n_max ? us_[hi] : 0.0;
}

int best_draft_length(const StepCost& cost, const Acceptance& acceptance, int n_tokens, double n_out,
                      int k_max) {
    if (k_max <= 0 || !cost.known(n_tokens)) return 0;  // the step's size without a draft comes first
    const double base = n_out / cost.estimate(n_tokens);
    int best_k = 0;
    double best = base * 1.02;  // a draft must win by a margin: timing noise is not a gain
    for (int k = 1; k <= k_max; ++k) {
        const double value = (n_out + acceptance.expected_extra(k)) / cost.estimate(n_tokens + k);
        if (value > best) {
            best = value;
            best_k = k;
        }
    }
    return best_k;
}

}  // namespace mr
