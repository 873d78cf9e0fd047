#include "mr/kv_layout.hpp"

#include <algorithm>

#include "mr/context.hpp"
#include "mr/errors.hpp"
#include "mr/model.hpp"

namespace mr {

namespace {

int max_sequence(const std::vector<std::vector<std::pair<int, int>>>& steps) {
    int top = -1;
    for (const auto& step : steps) {
        for (const auto& [seq, n] : step) {
            if (seq < 0 || n <= 0) throw InvalidArgument("sequence ids must be >= 0 and token counts > 0");
            top = std::max(top, seq);
        }
    }
    return top;
}

// The cell of each position of `seq`: copying one position to a scratch sequence tags just that
// cell, and the scratch sequence's end is one past it.
std::vector<int> cells_of(llama_memory_t mem, llama_seq_id seq, llama_seq_id scratch) {
    std::vector<int> cells;
    const llama_pos last = llama_memory_seq_pos_max(mem, seq);
    for (llama_pos p = 0; p <= last; ++p) {
        llama_memory_seq_cp(mem, seq, scratch, p, p + 1);
        cells.push_back(llama_memory_seq_cell_end(mem, scratch) - 1);
        llama_memory_seq_rm(mem, scratch, -1, -1);
    }
    return cells;
}

}  // namespace

std::map<int, std::vector<int>> kv_cell_layout(const Model& model, int n_ctx,
                                               const std::vector<std::vector<std::pair<int, int>>>& steps,
                                               bool paged) {
    const int top = max_sequence(steps);
    if (top + 2 > static_cast<int>(llama_max_parallel_sequences())) throw InvalidArgument("too many sequences");
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(n_ctx);
    cp.n_seq_max = static_cast<uint32_t>(top + 2);  // and a scratch sequence
    cp.kv_unified = true;
    cp.n_threads = cp.n_threads_batch = 1;
    int widest = 1;
    for (const auto& step : steps) {
        int n = 0;
        for (const auto& group : step) n += group.second;
        widest = std::max(widest, n);
    }
    cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(widest);
    ContextPtr ctx = make_context(model, cp);
    llama_memory_set_paged(llama_get_memory(ctx.get()), paged);
    Batch batch(widest, 1);
    std::vector<llama_pos> next(static_cast<size_t>(top + 1), 0);
    int decoded = 0;
    for (const auto& step : steps) {
        batch.clear();
        for (const auto& [seq, n] : step) {
            for (int i = 0; i < n; ++i) batch.add(1, next[static_cast<size_t>(seq)]++, seq, false);
        }
        decoded += batch.size();
        if (llama_decode(ctx.get(), batch.get()) != 0) throw ContextOverflow(decoded, n_ctx);
    }
    llama_memory_t mem = llama_get_memory(ctx.get());
    std::map<int, std::vector<int>> layout;
    for (int seq = 0; seq <= top; ++seq) {
        if (next[static_cast<size_t>(seq)] > 0) layout[seq] = cells_of(mem, seq, top + 1);
    }
    return layout;
}

}  // namespace mr
