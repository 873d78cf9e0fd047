// One ggml matrix product on the CPU backend, through the same ggml_mul_mat path the model's
// layers take. Tests hold ggml's kernels, and mr's patches to them (vendor/patches), against a
// reference computed independently of ggml.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mr {

// weights: `rows` rows of `k` values each, in ggml type `type`'s block layout (raw bytes).
// x: n rows of k float32. Returns the n x rows float32 product x * weights^T, row-major.
// reference: ggml's reference kernels, as the deterministic mode computes (vendor/patches/0006).
// Throws InvalidArgument for an unknown or block-misaligned type or a size that does not match.
std::vector<float> cpu_mul_mat(int type, const void* weights, std::size_t weight_bytes, int64_t rows,
                               int64_t k, const float* x, int64_t n, int threads, bool reference = false);

// `rows` rows of k float32 quantized to ggml type `type` with ggml's own quantizer (raw blocks).
std::vector<uint8_t> cpu_quantize(int type, const float* x, int64_t rows, int64_t k);

// Flash attention (ggml_flash_attn_ext, the kernel every decode step runs) over K and V stored as
// f16, as in the KV cache. q: n_head x n_q x d, k and v: n_head_kv x n_kv x d, mask: n_q x n_kv
// (0 or -inf), all float32 row-major; K, V and the mask are rounded to f16 here. Returns
// n_q x n_head x d, scaled by 1/sqrt(d). Throws InvalidArgument for sizes that do not fit.
std::vector<float> cpu_flash_attn(const float* q, const float* k, const float* v, const float* mask, int64_t d,
                                  int64_t n_q, int64_t n_head, int64_t n_kv, int64_t n_head_kv, int threads,
                                  bool reference = false);

}  // namespace mr
