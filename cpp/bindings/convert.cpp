#include "bindings.hpp"

#include "mr/errors.hpp"
#include "mr/model.hpp"

namespace mr::bind {

py::array_t<int32_t> to_array(const std::vector<llama_token>& tokens) {
    return py::array_t<int32_t>(static_cast<py::ssize_t>(tokens.size()), tokens.data());
}

std::vector<llama_token> to_tokens(const TokenArray& a) {
    if (a.ndim() != 1) throw InvalidArgument("token ids must be a 1-D sequence");
    return std::vector<llama_token>(a.data(), a.data() + a.size());
}

py::array_t<float> to_matrix(std::vector<float>&& data, py::ssize_t rows, py::ssize_t cols) {
    auto* owned = new std::vector<float>(std::move(data));
    py::capsule free_when_done(owned, [](void* v) { delete static_cast<std::vector<float>*>(v); });
    return py::array_t<float>({rows, cols}, owned->data(), free_when_done);
}

std::shared_ptr<Model> held(std::shared_ptr<Model> model) {
    Model* raw = model.get();
    return std::shared_ptr<Model>(raw, [model](Model*) mutable { without_gil([&model] { model.reset(); }); });
}

}  // namespace mr::bind
