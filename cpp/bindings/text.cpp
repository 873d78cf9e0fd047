// Text assembly and wire frames (mr/text.hpp), exposed for the Python side and its tests.
#include <pybind11/stl.h>

#include "bindings.hpp"

#include "mr/text.hpp"

namespace mr::bind {

using namespace pybind11::literals;

void bind_text(py::module_& m) {
    py::class_<TextAssembler>(m, "TextAssembler")
        .def(py::init<std::vector<std::string>>(), "stops"_a = std::vector<std::string>{})
        .def("feed", [](TextAssembler& self, const py::bytes& piece) { return self.feed(std::string_view(piece)); },
             "piece"_a)
        .def("flush", &TextAssembler::flush, "cut"_a = false)
        .def_property_readonly("stopped", &TextAssembler::stopped)
        .def_property_readonly("matched", &TextAssembler::matched);
    py::class_<FrameFormat>(m, "FrameFormat")
        .def(py::init([](const py::bytes& head, const py::bytes& tail, bool chunked) {
                 return FrameFormat{std::string(head), std::string(tail), chunked};
             }),
             "head"_a = py::bytes(), "tail"_a = py::bytes(), "chunked"_a = false)
        .def_property_readonly("head", [](const FrameFormat& self) { return py::bytes(self.head); })
        .def_property_readonly("tail", [](const FrameFormat& self) { return py::bytes(self.tail); })
        .def_readonly("chunked", &FrameFormat::chunked)
        .def("render", [](const FrameFormat& self, const std::string& text) { return py::bytes(self.render(text)); },
             "text"_a);
}

}  // namespace mr::bind
