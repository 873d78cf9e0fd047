#include "mr/sampler.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "mr/errors.hpp"
#include "reasoning-budget.h"
#include "mr/model.hpp"

namespace mr {
namespace {

void require(bool ok, const std::string& what) {
    if (!ok) throw InvalidArgument(what);
}

bool penalties_active(const SamplingParams& p) {
    return p.penalty_last_n != 0 &&
           (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f);
}

llama_sampler* grammar_sampler(const Model& model, const SamplingParams& p) {
    llama_sampler* g = nullptr;
    if (p.grammar_lazy) {
        std::vector<const char*> patterns;
        for (const auto& pattern : p.trigger_patterns) patterns.push_back(pattern.c_str());
        g = llama_sampler_init_grammar_lazy_patterns(model.vocab(), p.grammar.c_str(), "root", patterns.data(),
                                                     patterns.size(), p.trigger_tokens.data(),
                                                     p.trigger_tokens.size());
    } else {
        g = llama_sampler_init_grammar(model.vocab(), p.grammar.c_str(), "root");
    }
    if (g == nullptr) throw InvalidArgument("the grammar could not be parsed");
    if (!p.grammar_lazy && !p.grammar_prefill.empty()) {
        std::unique_ptr<llama_sampler, SamplerDeleter> owned(g);
        const auto tokens = model.tokenize(p.grammar_prefill, false, true);
        try {
            for (size_t i = 0; i < tokens.size(); ++i) {
                const std::string piece = model.token_to_piece(tokens[i], true);
                // some tokenizers put a space before the first special token: not part of the text
                if (i == 0 && !piece.empty() && std::isspace(static_cast<unsigned char>(piece[0])) &&
                    !std::isspace(static_cast<unsigned char>(p.grammar_prefill[0]))) {
                    continue;
                }
                llama_sampler_accept(g, tokens[i]);
            }
        } catch (const std::exception& e) {
            throw InvalidArgument(std::string("the grammar does not accept the prompt's end: ") + e.what());
        }
        g = owned.release();
    }
    return g;
}

// llama.cpp's reasoning-budget sampler (the one llama-server runs): counts tokens inside the
// thinking block and, once over budget, forces its end tag token by token.
llama_sampler* budget_sampler(const Model& model, const SamplingParams& p) {
    std::vector<llama_tokens> ends;
    for (const auto& tag : p.reasoning_end) ends.push_back(model.tokenize(tag, false, true));
    llama_sampler* s = common_reasoning_budget_init(model.vocab(), {model.tokenize(p.reasoning_start, false, true)},
                                                    ends, ends.front(), p.reasoning_budget);
    for (llama_token t : model.tokenize(p.reasoning_prefill, false, true)) llama_sampler_accept(s, t);
    return s;
}

bool budget_active(const SamplingParams& p) {
    return p.reasoning_budget >= 0 && !p.reasoning_start.empty() && !p.reasoning_end.empty() &&
           !p.reasoning_end.front().empty();
}

}  // namespace

int32_t first_argmax(const float* values, int32_t n) {
    // std::max_element's answer for a NaN first is index 0 (nothing compares larger than it).
    if (n < 16 || std::isnan(values[0])) {
        return static_cast<int32_t>(std::max_element(values, values + n) - values);
    }
#if defined(__SSE2__)
    // Compilers keep std::max_element scalar, one compare per logit in a dependent chain. Pass
    // 1: the largest value, in four independent vector maxima. maxps(x, m) keeps m
    // when x is NaN, so a NaN never wins. Pass 2: the first position holding it, 16 at a time.
    __m128 m0 = _mm_set1_ps(values[0]), m1 = m0, m2 = m0, m3 = m0;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm_max_ps(_mm_loadu_ps(values + i), m0);
        m1 = _mm_max_ps(_mm_loadu_ps(values + i + 4), m1);
        m2 = _mm_max_ps(_mm_loadu_ps(values + i + 8), m2);
        m3 = _mm_max_ps(_mm_loadu_ps(values + i + 12), m3);
    }
    float lanes[4];
    _mm_storeu_ps(lanes, _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3)));
    float best = values[0];
    for (float lane : lanes) best = lane > best ? lane : best;
    for (int32_t k = i; k < n; ++k) best = values[k] > best ? values[k] : best;
    const __m128 b = _mm_set1_ps(best);
    for (i = 0; i + 16 <= n; i += 16) {
        const int hits = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(values + i), b)) |
                         _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(values + i + 4), b)) << 4 |
                         _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(values + i + 8), b)) << 8 |
                         _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(values + i + 12), b)) << 12;
        if (hits != 0) return i + __builtin_ctz(static_cast<unsigned>(hits));
    }
    while (values[i] != best) ++i;  // in the tail: best is one of the values, so this stops
    return i;
#else
    return static_cast<int32_t>(std::max_element(values, values + n) - values);
#endif
}

void validate(const Model& model, const SamplingParams& p) {
    require(std::isfinite(p.temperature) && p.temperature <= 100.0f, "temperature must be a finite number <= 100");
    require(std::isfinite(p.top_p) && p.top_p >= 0.0f && p.top_p <= 1.0f, "top_p must be in [0, 1]");
    require(std::isfinite(p.min_p) && p.min_p >= 0.0f && p.min_p <= 1.0f, "min_p must be in [0, 1]");
    require(p.top_k <= model.n_vocab(), "top_k must not exceed the vocabulary size");
    require(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0.0f, "repeat_penalty must be > 0");
    require(std::isfinite(p.presence_penalty) && std::fabs(p.presence_penalty) <= 2.0f,
            "presence_penalty must be in [-2, 2]");
    require(std::isfinite(p.frequency_penalty) && std::fabs(p.frequency_penalty) <= 2.0f,
            "frequency_penalty must be in [-2, 2]");
    require(p.penalty_last_n >= 0, "penalty_last_n must be >= 0");
    require(p.reasoning_budget >= -1, "the reasoning budget must be >= 0 (or -1 for none)");
    for (llama_token t : p.trigger_tokens) model.check_token(t);
    require(p.grammar.size() <= (1u << 20), "the grammar is too large");
    for (const auto& [token, bias] : p.logit_bias) {
        model.check_token(token);
        require(!std::isnan(bias), "logit_bias values must be numbers");
    }
}

Sampler::Sampler(const Model& model, const SamplingParams& p) {
    validate(model, p);
    llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf = true;
    chain_.reset(llama_sampler_chain_init(cp));
    llama_sampler* c = chain_.get();
    const int32_t n_vocab = model.n_vocab();
    n_vocab_ = n_vocab;
    // Only the samplers below read every logit; with none of them the fast paths are exact.
    const bool plain = !budget_active(p) && p.grammar.empty() && p.logit_bias.empty() && !penalties_active(p);

    if (budget_active(p)) llama_sampler_chain_add(c, budget_sampler(model, p));  // first: it may force a token
    if (!p.grammar.empty()) llama_sampler_chain_add(c, grammar_sampler(model, p));
    if (!p.logit_bias.empty()) {
        std::vector<llama_logit_bias> bias;
        bias.reserve(p.logit_bias.size());
        for (const auto& [token, value] : p.logit_bias) bias.push_back({token, value});
        llama_sampler_chain_add(c, llama_sampler_init_logit_bias(n_vocab, bias.size(), bias.data()));
    }
    if (penalties_active(p)) {
        llama_sampler_chain_add(c, llama_sampler_init_penalties(n_vocab, p.penalty_last_n, p.repeat_penalty,
                                                                p.frequency_penalty, p.presence_penalty));
    }
    if (p.temperature <= 0.0f) {
        llama_sampler_chain_add(c, llama_sampler_init_greedy());
        if (plain) path_ = Path::Argmax;
        return;
    }
    if (p.top_k > 0) llama_sampler_chain_add(c, llama_sampler_init_top_k(p.top_k));
    if (plain && p.top_k > 0 && p.top_k < n_vocab) {
        path_ = Path::TopK;
        top_k_ = p.top_k;
        candidates_.reserve(p.top_k);
    }
    if (p.top_p < 1.0f) llama_sampler_chain_add(c, llama_sampler_init_top_p(p.top_p, 1));
    if (p.min_p > 0.0f) llama_sampler_chain_add(c, llama_sampler_init_min_p(p.min_p, 1));
    llama_sampler_chain_add(c, llama_sampler_init_temp(p.temperature));
    llama_sampler_chain_add(c, llama_sampler_init_dist(p.seed));
}

llama_token Sampler::sample(llama_context* ctx, int32_t idx) {
    if (path_ == Path::Chain) return llama_sampler_sample(chain_.get(), ctx, idx);
    const float* logits = llama_get_logits_ith(ctx, idx);
    if (logits == nullptr) throw Error("no logits for batch output " + std::to_string(idx));
    if (path_ == Path::Argmax) {  // the first maximum, as llama.cpp's greedy sampler picks
        return static_cast<llama_token>(first_argmax(logits, n_vocab_));
    }
    const llama_token token = sample_top_k(logits);
    llama_sampler_accept(chain_.get(), token);
    return token;
}

llama_token Sampler::sample_top_k(const float* logits) {
    // A min-heap of the k best (worst on top): almost every logit loses one comparison.
    auto worse = [](const llama_token_data& a, const llama_token_data& b) { return a.logit > b.logit; };
    candidates_.clear();
    for (llama_token id = 0; id < n_vocab_; ++id) {
        const float logit = logits[id];
        if (static_cast<int32_t>(candidates_.size()) < top_k_) {
            candidates_.push_back({id, logit, 0.0f});
            std::push_heap(candidates_.begin(), candidates_.end(), worse);
        } else if (logit > candidates_.front().logit) {
            std::pop_heap(candidates_.begin(), candidates_.end(), worse);
            candidates_.back() = {id, logit, 0.0f};
            std::push_heap(candidates_.begin(), candidates_.end(), worse);
        }
    }
    // Best first, ids ascending among equals: the order llama.cpp's own top-k leaves them in.
    std::sort(candidates_.begin(), candidates_.end(), [](const llama_token_data& a, const llama_token_data& b) {
        return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
    });
    llama_token_data_array arr{candidates_.data(), candidates_.size(), -1, true};
    llama_sampler_apply(chain_.get(), &arr);  // top-k (a no-op now), top-p, min-p, temperature, dist
    if (arr.selected < 0 || arr.selected >= static_cast<int64_t>(arr.size)) throw Error("the sampler chose no token");
    return arr.data[arr.selected].id;
}

void Sampler::accept(llama_token token) { llama_sampler_accept(chain_.get(), token); }

}  // namespace mr
