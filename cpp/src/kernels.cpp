#include "mr/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ggml-cpu.h"
#include "ggml.h"
#include "mr/errors.hpp"

namespace mr {
namespace {

struct ContextFree {
    void operator()(ggml_context* ctx) const { ggml_free(ctx); }
};
using ContextPtr = std::unique_ptr<ggml_context, ContextFree>;

ggml_type checked_type(int type, int64_t k) {
    if (type < 0 || type >= GGML_TYPE_COUNT || ggml_type_size(static_cast<ggml_type>(type)) == 0) {
        throw InvalidArgument("unknown ggml type " + std::to_string(type));
    }
    const auto t = static_cast<ggml_type>(type);
    if (k <= 0 || k % ggml_blck_size(t) != 0) {
        throw InvalidArgument("k = " + std::to_string(k) + " is not a whole number of " + ggml_type_name(t) +
                              " blocks (" + std::to_string(ggml_blck_size(t)) + " values)");
    }
    return t;
}

// Computes `graph` on `threads` CPU threads, with the reference kernels when asked.
void compute(ggml_cgraph* graph, int threads, bool reference, const char* what) {
    ggml_cplan plan = ggml_graph_plan(graph, threads, nullptr);
    std::vector<uint8_t> work(plan.work_size);
    plan.work_data = work.data();
    plan.use_ref = reference;
    if (ggml_graph_compute(graph, &plan) != GGML_STATUS_SUCCESS) {
        throw Error(std::string("ggml could not compute the ") + what);
    }
}

}  // namespace

std::vector<uint8_t> cpu_quantize(int type, const float* x, int64_t rows, int64_t k) {
    const ggml_type t = checked_type(type, k);
    if (rows <= 0) throw InvalidArgument("rows must be positive");
    // ggml's quantizer aborts the process for a type it cannot make (Q8_1, Q8_K) or one that
    // needs an importance matrix (the IQ types): only the common weight types are taken here.
    static constexpr ggml_type kQuantizable[] = {
        GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
        GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    if (std::find(std::begin(kQuantizable), std::end(kQuantizable), t) == std::end(kQuantizable)) {
        throw InvalidArgument(std::string("cpu_quantize does not make ") + ggml_type_name(t));
    }
    std::vector<uint8_t> out(ggml_row_size(t, k) * static_cast<std::size_t>(rows));
    ggml_quantize_init(t);
    ggml_quantize_chunk(t, x, out.data(), 0, rows, k, nullptr);
    return out;
}

std::vector<float> cpu_mul_mat(int type, const void* weights, std::size_t weight_bytes, int64_t rows, int64_t k,
                               const float* x, int64_t n, int threads, bool reference) {
    const ggml_type t = checked_type(type, k);
    if (rows <= 0 || n <= 0 || threads <= 0) {
        throw InvalidArgument("rows, n and threads must be positive");
    }
    const std::size_t row_bytes = ggml_row_size(t, k);
    if (weight_bytes != row_bytes * static_cast<std::size_t>(rows)) {
        throw InvalidArgument("weights have " + std::to_string(weight_bytes) + " bytes, " + std::to_string(rows) +
                              " rows of " + ggml_type_name(t) + " need " + std::to_string(row_bytes * rows));
    }
    const std::size_t floats = static_cast<std::size_t>(n) * (k + rows);
    // Tensors, the graph, and the work buffer (the activations quantized to the kernel's type).
    const std::size_t mem = weight_bytes + 2 * floats * sizeof(float) + 8 * ggml_tensor_overhead() +
                            ggml_graph_overhead() + (1u << 20);
    ContextPtr ctx(ggml_init({mem, nullptr, false}));
    if (!ctx) {
        throw Error("ggml_init failed for a " + std::to_string(mem) + "-byte context");
    }
    ggml_tensor* w = ggml_new_tensor_2d(ctx.get(), t, k, rows);
    ggml_tensor* a = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, k, n);
    std::memcpy(w->data, weights, weight_bytes);
    std::memcpy(a->data, x, static_cast<std::size_t>(n * k) * sizeof(float));
    ggml_tensor* out = ggml_mul_mat(ctx.get(), w, a);  // ne0 = rows, ne1 = n
    ggml_cgraph* graph = ggml_new_graph(ctx.get());
    ggml_build_forward_expand(graph, out);
    compute(graph, threads, reference, "product");
    const auto* result = static_cast<const float*>(out->data);
    return std::vector<float>(result, result + n * rows);
}

std::vector<float> cpu_flash_attn(const float* q, const float* k, const float* v, const float* mask, int64_t d,
                                  int64_t n_q, int64_t n_head, int64_t n_kv, int64_t n_head_kv, int threads,
                                  bool reference) {
    if (d <= 0 || n_q <= 0 || n_head <= 0 || n_kv <= 0 || n_head_kv <= 0 || threads <= 0) {
        throw InvalidArgument("every size and the thread count must be positive");
    }
    if (n_head % n_head_kv != 0) throw InvalidArgument("n_head must be a multiple of n_head_kv");
    const int64_t nq = d * n_q * n_head, nkv = d * n_kv * n_head_kv, nmask = n_kv * n_q;
    const std::size_t mem = (nq * 2 + nkv * 2) * sizeof(float) + nmask * sizeof(ggml_fp16_t) +
                            8 * ggml_tensor_overhead() + ggml_graph_overhead() + (4u << 20);
    ContextPtr ctx(ggml_init({mem, nullptr, false}));
    if (!ctx) throw Error("ggml_init failed for a " + std::to_string(mem) + "-byte context");
    ggml_tensor* tq = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F32, d, n_q, n_head);
    ggml_tensor* tk = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F16, d, n_kv, n_head_kv);
    ggml_tensor* tv = ggml_new_tensor_3d(ctx.get(), GGML_TYPE_F16, d, n_kv, n_head_kv);
    ggml_tensor* tm = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F16, n_kv, n_q);
    std::memcpy(tq->data, q, static_cast<std::size_t>(nq) * sizeof(float));
    ggml_fp32_to_fp16_row(k, static_cast<ggml_fp16_t*>(tk->data), nkv);
    ggml_fp32_to_fp16_row(v, static_cast<ggml_fp16_t*>(tv->data), nkv);
    ggml_fp32_to_fp16_row(mask, static_cast<ggml_fp16_t*>(tm->data), nmask);
    ggml_tensor* out = ggml_flash_attn_ext(ctx.get(), tq, tk, tv, tm, 1.0f / std::sqrt(static_cast<float>(d)),
                                           0.0f, 0.0f);  // ne = d, n_head, n_q
    ggml_cgraph* graph = ggml_new_graph(ctx.get());
    ggml_build_forward_expand(graph, out);
    compute(graph, threads, reference, "attention");
    const auto* result = static_cast<const float*>(out->data);
    return std::vector<float>(result, result + nq);
}

}  // namespace mr
