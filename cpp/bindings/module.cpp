// pybind11 only: type conversion, GIL release, exception translation. No logic lives here:
// each bind_* function (one file per part of mr's C++ API) registers its classes.
#include "bindings.hpp"

PYBIND11_MODULE(_native, m) {
    using namespace mr::bind;
    namespace py = pybind11;
    m.doc() = "mr's native core: llama.cpp behind a small C++ API";
    bind_errors(m);
    bind_runtime(m);
    bind_model(m);
    bind_text(m);
    bind_projector(m);  // before the engine: Engine(projector=None) names its type
    bind_engine(m);
    bind_embedder(m);
    bind_chat(m);
    py::module_ testing = m.def_submodule("testing");
    bind_testing(testing);
    // `import mr._native.testing` works as for a package's module
    py::module_::import("sys").attr("modules")[testing.attr("__name__")] = testing;
}
