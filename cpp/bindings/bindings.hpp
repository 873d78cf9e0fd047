// Shared by the binding files: conversions, GIL handling and owners. Each bind_* function
// registers one part of the native API; module.cpp calls them all.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <utility>
#include <vector>

#include "llama.h"

namespace mr {
class Model;
}

namespace mr::bind {

namespace py = pybind11;
using release_gil = py::call_guard<py::gil_scoped_release>;
using TokenArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

void bind_errors(py::module_& m);
void bind_runtime(py::module_& m);
void bind_model(py::module_& m);
void bind_text(py::module_& m);
void bind_engine(py::module_& m);
void bind_embedder(py::module_& m);
void bind_chat(py::module_& m);
void bind_projector(py::module_& m);
void bind_testing(py::module_ testing);

py::array_t<int32_t> to_array(const std::vector<llama_token>& tokens);
std::vector<llama_token> to_tokens(const TokenArray& a);
// Hands the vector's buffer to numpy without copying; the array frees it.
py::array_t<float> to_matrix(std::vector<float>&& data, py::ssize_t rows, py::ssize_t cols);

// Runs `free` without the GIL when this thread holds it. Freeing a native object can wait on
// native threads (an engine's, an RPC connection's) that may be waiting for the GIL themselves,
// to hand a log line to Python: with the GIL held here, both would wait forever.
template <class F>
void without_gil(F&& free) {
    if (PyGILState_Check()) {
        py::gil_scoped_release nogil;
        free();
    } else {
        free();
    }
}

struct FreeWithoutGil {
    template <class T>
    void operator()(T* p) const {
        without_gil([p] { delete p; });
    }
};

template <class T>
using Owned = std::unique_ptr<T, FreeWithoutGil>;

// The model as Python holds it: the last reference, wherever it goes, is dropped without the GIL.
std::shared_ptr<Model> held(std::shared_ptr<Model> model);

// `T(**fields)`: a plain struct built from keyword arguments, each set through its bound
// attribute (so an unknown name or a wrong type is the usual AttributeError or TypeError).
template <class T>
std::unique_ptr<T> from_kwargs(const py::kwargs& fields) {
    auto made = std::make_unique<T>();
    py::object view = py::cast(made.get(), py::return_value_policy::reference);
    for (auto item : fields) py::setattr(view, item.first, item.second);
    return made;
}

}  // namespace mr::bind
