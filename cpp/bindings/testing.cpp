// mr._native.testing: ggml's CPU kernels called directly, for the tests that pin their
// numerics (tiles, flash attention, batch invariance), the draft planner's step cost, and where
// a shared KV cache puts each sequence's cells. Not part of mr's API.
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "bindings.hpp"

#include "mr/drafter.hpp"
#include "mr/errors.hpp"
#include "mr/kernels.hpp"
#include "mr/kv_layout.hpp"
#include "mr/model.hpp"
#include "mr/sampler.hpp"

namespace mr::bind {
namespace {

using namespace pybind11::literals;

py::array_t<float> cpu_mul_mat(int type, const py::bytes& weights, int64_t rows, const FloatArray& x, int threads,
                               bool reference) {
    if (x.ndim() != 2) throw InvalidArgument("x must be a 2-D float32 array (n, k)");
    const std::string_view w(weights);
    const int64_t n = x.shape(0), k = x.shape(1);
    std::vector<float> out;
    {
        py::gil_scoped_release released;
        out = mr::cpu_mul_mat(type, w.data(), w.size(), rows, k, x.data(), n, threads, reference);
    }
    return to_matrix(std::move(out), n, rows);
}

void check_attention_shapes(const FloatArray& q, const FloatArray& k, const FloatArray& v, const FloatArray& mask) {
    if (q.ndim() != 3 || k.ndim() != 3 || v.ndim() != 3 || mask.ndim() != 2) {
        throw InvalidArgument("q, k and v must be 3-D (heads, rows, d) and mask 2-D (n_q, n_kv)");
    }
    for (const FloatArray* a : {&k, &v}) {
        if (a->shape(0) != k.shape(0) || a->shape(1) != k.shape(1) || a->shape(2) != q.shape(2)) {
            throw InvalidArgument("k and v must both be (n_head_kv, n_kv, d) with q's d");
        }
    }
    if (mask.shape(0) != q.shape(1) || mask.shape(1) != k.shape(1)) throw InvalidArgument("mask must be (n_q, n_kv)");
}

py::array_t<float> cpu_flash_attn(const FloatArray& q, const FloatArray& k, const FloatArray& v, const FloatArray& mask,
                                  int threads, bool reference) {
    check_attention_shapes(q, k, v, mask);
    const int64_t n_head = q.shape(0), n_q = q.shape(1), d = q.shape(2), n_head_kv = k.shape(0), n_kv = k.shape(1);
    std::vector<float> out;
    {
        py::gil_scoped_release released;
        out = mr::cpu_flash_attn(q.data(), k.data(), v.data(), mask.data(), d, n_q, n_head, n_kv, n_head_kv, threads,
                                 reference);
    }
    return py::array_t<float>(to_matrix(std::move(out), n_q, n_head * d).reshape({n_q, n_head, d}));
}

py::bytes cpu_quantize(int type, const FloatArray& x) {
    if (x.ndim() != 2) throw InvalidArgument("x must be a 2-D float32 array (rows, k)");
    const std::vector<uint8_t> out = mr::cpu_quantize(type, x.data(), x.shape(0), x.shape(1));
    return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

int32_t first_argmax(const FloatArray& values) {
    if (values.ndim() != 1 || values.size() == 0) throw InvalidArgument("values must be a non-empty 1-D array");
    if (values.size() > INT32_MAX) throw InvalidArgument("values has more than 2^31 - 1 entries");
    return mr::first_argmax(values.data(), static_cast<int32_t>(values.size()));
}

// The draft planner's step cost after `steps` ((tokens, sequences, prompt tokens, microseconds)
// each) were recorded: its estimate for a step of n_tokens from n_seqs sequences.
double step_cost_estimate(const std::vector<std::tuple<int, int, int, double>>& steps, int n_tokens, int n_seqs,
                          int max_tokens) {
    StepCost cost(max_tokens);
    for (const auto& [tokens, seqs, prompt, us] : steps) cost.record(tokens, seqs, prompt, us);
    return cost.estimate(n_tokens, n_seqs);
}

// The draft lengths the planner picks after `steps` (as above) for slots drafting with these
// acceptance rates, up to k_max tokens each, in a step of n_tokens tokens with `room` to spare.
std::vector<int> draft_plan(const std::vector<std::tuple<int, int, int, double>>& steps, const std::vector<double>& rates,
                            const std::vector<int>& k_max, int n_tokens, int room) {
    if (rates.size() != k_max.size()) throw InvalidArgument("rates and k_max differ in length");
    StepCost cost(std::max(512, n_tokens + room));
    for (const auto& [tokens, seqs, prompt, us] : steps) cost.record(tokens, seqs, prompt, us);
    std::vector<Acceptance> acceptance;
    for (double rate : rates) acceptance.emplace_back(rate);
    std::vector<const Acceptance*> pointers;
    for (const Acceptance& a : acceptance) pointers.push_back(&a);
    return plan_draft_lengths(cost, pointers, k_max, n_tokens, room);
}

// The draft recalled for `seq` from other sequences' tokens (the running requests', then the
// earlier ones kept in memory), and how many tokens agree before it.
std::pair<std::vector<llama_token>, int> recall_draft(const std::vector<std::vector<llama_token>>& sources,
                                                      const std::vector<llama_token>& seq, int k) {
    std::vector<NgramIndex> indexes(sources.size());
    std::vector<const NgramIndex*> pointers;
    for (size_t i = 0; i < sources.size(); ++i) {
        indexes[i].append(sources[i]);
        pointers.push_back(&indexes[i]);
    }
    int matched = 0;
    std::vector<llama_token> draft = recall(pointers, seq, k, &matched);
    return {std::move(draft), matched};
}

std::map<int, std::vector<int>> kv_cell_layout(const std::shared_ptr<Model>& model, int n_ctx,
                                               const std::vector<std::vector<std::pair<int, int>>>& steps,
                                               bool paged) {
    py::gil_scoped_release released;
    return mr::kv_cell_layout(*model, n_ctx, steps, paged);
}

}  // namespace

void bind_testing(py::module_ t) {
    t.doc() = "ggml's CPU kernels called directly, for mr's tests (not part of mr's API)";
    t.def("cpu_mul_mat", &cpu_mul_mat, "type"_a, "weights"_a, "rows"_a, "x"_a, "threads"_a = 1, "reference"_a = false);
    t.def("cpu_quantize", &cpu_quantize, "type"_a, "x"_a);
    t.def("first_argmax", &first_argmax, "values"_a);
    t.def("recall_draft", &recall_draft, "sources"_a, "seq"_a, "k"_a);
    t.def("draft_plan", &draft_plan, "steps"_a, "rates"_a, "k_max"_a, "n_tokens"_a, "room"_a);
    t.def("step_cost_estimate", &step_cost_estimate, "steps"_a, "n_tokens"_a, "n_seqs"_a, "max_tokens"_a = 512);
    t.def("kv_cell_layout", &kv_cell_layout, "model"_a, "n_ctx"_a, "steps"_a, "paged"_a = true);
    t.def("cpu_flash_attn", &cpu_flash_attn, "q"_a, "k"_a, "v"_a, "mask"_a, "threads"_a = 1, "reference"_a = false);
}

}  // namespace mr::bind
