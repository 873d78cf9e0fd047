// mr's C++ exceptions become the Python exceptions of mr.errors.
#include "bindings.hpp"

#include "mr/errors.hpp"

namespace mr::bind {
namespace {

using namespace pybind11::literals;

// Raise mr.errors.<name>(message) with extra attributes set on the instance.
void raise_mr(const char* name, const std::string& message, py::dict attrs = {}) {
    py::object cls = py::module_::import("mr.errors").attr(name);
    py::object exc = cls(message);
    for (auto item : attrs) py::setattr(exc, item.first, item.second);
    PyErr_SetObject(cls.ptr(), exc.ptr());
}

void translate(std::exception_ptr p) {
    try {
        if (p) std::rethrow_exception(p);
    } catch (const ContextOverflow& e) {
        raise_mr("ContextLengthError", e.what(), py::dict("n_requested"_a = e.n_requested, "n_ctx"_a = e.n_ctx));
    } catch (const InvalidArgument& e) {
        raise_mr("InvalidArgumentError", e.what());
    } catch (const ModelLoadError& e) {
        raise_mr("ModelLoadError", e.what());
    } catch (const Overloaded& e) {
        raise_mr("OverloadedError", e.what());
    } catch (const TemplateError& e) {
        raise_mr("TemplateError", e.what());
    } catch (const Cancelled& e) {
        raise_mr("CutShortError", e.what());
    } catch (const Error& e) {
        raise_mr("EngineError", e.what());
    }
}

}  // namespace

void bind_errors(py::module_&) { py::register_exception_translator(translate); }

}  // namespace mr::bind
