#include "mr/kernels.hpp"

#include <cstring>
#include <memory>
#include <string>

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

}  // namespace

std::vector<float> cpu_mul_mat(int type, const void* weights, std::size_t weight_bytes, int64_t rows, int64_t k,
                               const float* x, int64_t n, int threads) {
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
    if (ggml_graph_compute_with_ctx(ctx.get(), graph, threads) != GGML_STATUS_SUCCESS) {
        throw Error("ggml could not compute the product");
    }
    const auto* result = static_cast<const float*>(out->data);
    return std::vector<float>(result, result + n * rows);
}

}  // namespace mr
