// Where a KV cache that sequences share puts each sequence's cells, for the tests that pin the
// placement (vendor/patches/0013). Not used by the engine.
#pragma once

#include <map>
#include <utility>
#include <vector>

namespace mr {

class Model;

// Decodes `steps` through a fresh context of n_ctx cells in one shared stream, paged as the
// engine's (llama_memory_set_paged) or not: each step is one llama_decode of (sequence, tokens)
// groups, each group's tokens at the sequence's next positions. Returns, for each sequence, the
// cell that holds each of its positions, in position order. Throws InvalidArgument for a bad
// sequence id or count, and ContextOverflow when a step does not fit.
std::map<int, std::vector<int>> kv_cell_layout(const Model& model, int n_ctx,
                                               const std::vector<std::vector<std::pair<int, int>>>& steps,
                                               bool paged);

}  // namespace mr
