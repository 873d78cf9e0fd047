// mr::Model: a loaded GGUF, its vocabulary and where its layers live.
#include <pybind11/stl.h>

#include "bindings.hpp"

#include "mr/model.hpp"

namespace mr::bind {
namespace {

using namespace pybind11::literals;

// (device, host, layers, output) per device holding layers.
py::list placement(const Model& self) {
    py::list out;
    for (const auto& p : self.placement()) out.append(py::make_tuple(p.device, p.host, p.layers, p.output));
    return out;
}

py::dict weight_buffers(const Model& self) {
    py::dict out;
    for (const auto& b : self.weight_buffers()) out[py::str(b.name)] = b.mib;
    return out;
}

py::array_t<int32_t> tokenize(const Model& self, const std::string& text, bool add_special, bool parse_special) {
    std::vector<llama_token> tokens;
    {
        py::gil_scoped_release nogil;
        tokens = self.tokenize(text, add_special, parse_special);
    }
    return to_array(tokens);
}

py::bytes detokenize(const Model& self, const TokenArray& ids, bool remove_special, bool unparse_special) {
    auto tokens = to_tokens(ids);
    std::string text;
    {
        py::gil_scoped_release nogil;
        text = self.detokenize(tokens, remove_special, unparse_special);
    }
    return py::bytes(text);
}

}  // namespace

void bind_model(py::module_& m) {
    py::class_<Model, std::shared_ptr<Model>>(m, "Model")
        .def(py::init([](const std::string& path, int n_gpu_layers, bool use_mmap, bool repack,
                         const std::vector<std::string>& rpc_workers) {
                 return held(Model::load({path, n_gpu_layers, use_mmap, repack, rpc_workers}));
             }),
             "path"_a, "n_gpu_layers"_a = -1, "use_mmap"_a = true, "repack"_a = true,
             "rpc_workers"_a = std::vector<std::string>{}, release_gil())
        .def_property_readonly("placement", &placement)
        .def_property_readonly("lost_worker", &Model::lost_worker)
        .def_property_readonly("weight_buffers", &weight_buffers)
        .def_property_readonly("path", &Model::path)
        .def_property_readonly("metadata", &Model::metadata)
        .def_property_readonly("description", &Model::description)
        .def_property_readonly("architecture", &Model::architecture)
        .def_property_readonly("chat_template", &Model::chat_template)
        .def_property_readonly("n_ctx_train", &Model::n_ctx_train)
        .def_property_readonly("n_embd", &Model::n_embd)
        .def_property_readonly("n_layer", &Model::n_layer)
        .def_property_readonly("n_params", &Model::n_params)
        .def_property_readonly("size_bytes", &Model::size_bytes)
        .def_property_readonly("n_vocab", &Model::n_vocab)
        .def_property_readonly("bos", &Model::bos)
        .def_property_readonly("eos", &Model::eos)
        .def_property_readonly("eot", &Model::eot)
        .def_property_readonly("eog_tokens", [](const Model& self) { return to_array(self.eog_tokens()); })
        .def("is_eog", &Model::is_eog, "token"_a)
        .def("tokenize", &tokenize, "text"_a, "add_special"_a = true, "parse_special"_a = false)
        .def("detokenize", &detokenize, "tokens"_a, "remove_special"_a = false, "unparse_special"_a = false)
        .def("token_to_piece",
             [](const Model& self, int32_t token, bool special) { return py::bytes(self.token_to_piece(token, special)); },
             "token"_a, "special"_a = false);
}

}  // namespace mr::bind
