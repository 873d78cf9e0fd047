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
// Throws InvalidArgument for an unknown or block-misaligned type or a size that does not match.
std::vector<float> cpu_mul_mat(int type, const void* weights, std::size_t weight_bytes, int64_t rows,
                               int64_t k, const float* x, int64_t n, int threads);

}  // namespace mr
