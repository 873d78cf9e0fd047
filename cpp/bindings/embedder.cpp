// mr::Embedder: embeddings and reranking, in a context of their own.
#include <pybind11/stl.h>

#include "bindings.hpp"

#include "mr/embedder.hpp"
#include "mr/model.hpp"

namespace mr::bind {
namespace {

using namespace pybind11::literals;

py::array_t<float> to_matrix(Embeddings&& e) { return bind::to_matrix(std::move(e.data), e.n_rows, e.n_embd); }

// (matrix, tokens processed)
py::tuple embed(Embedder& self, const std::vector<std::string>& texts, bool normalize, bool truncate) {
    Embeddings e;
    {
        py::gil_scoped_release nogil;
        e = self.embed(texts, normalize, truncate);
    }
    const int n_tokens = e.n_tokens;
    return py::make_tuple(to_matrix(std::move(e)), n_tokens);
}

// (scores as a one-column matrix, tokens processed, batches run)
py::tuple rerank(Embedder& self, const std::string& query, const std::vector<std::string>& documents, bool truncate) {
    Embeddings e;
    {
        py::gil_scoped_release nogil;
        e = self.rerank(query, documents, truncate);
    }
    const int n_tokens = e.n_tokens, n_batches = e.n_batches;
    return py::make_tuple(to_matrix(std::move(e)), n_tokens, n_batches);
}

py::tuple embed_tokens(Embedder& self, std::vector<std::vector<int32_t>> inputs, bool normalize, bool truncate) {
    Embeddings e;
    {
        py::gil_scoped_release nogil;
        e = self.embed_tokens(std::move(inputs), normalize, truncate);
    }
    const int n_tokens = e.n_tokens;
    return py::make_tuple(to_matrix(std::move(e)), n_tokens);
}

}  // namespace

void bind_embedder(py::module_& m) {
    py::class_<Embedder, Owned<Embedder>>(m, "Embedder")
        .def(py::init([](std::shared_ptr<Model> model, int n_ctx, int n_seq_max, int n_threads, bool rank) {
                 return Owned<Embedder>(new Embedder(std::move(model), EmbedderParams{n_ctx, n_seq_max, n_threads, rank}));
             }),
             "model"_a, "n_ctx"_a = 2048, "n_seq_max"_a = 32, "n_threads"_a = 0, "rank"_a = false, release_gil())
        .def("embed", &embed, "texts"_a, "normalize"_a = true, "truncate"_a = false)
        .def("rerank", &rerank, "query"_a, "documents"_a, "truncate"_a = false)
        .def_property_readonly("rank", &Embedder::rank)
        .def("embed_tokens", &embed_tokens, "inputs"_a, "normalize"_a = true, "truncate"_a = false)
        .def("cancel", &Embedder::cancel, "why"_a, release_gil())
        .def_property_readonly("pooling_type", &Embedder::pooling_type)
        .def_property_readonly("n_ctx", &Embedder::n_ctx);
}

}  // namespace mr::bind
