// Chat templates, tool-call parsing and JSON-schema grammars (llama.cpp's common/chat).
#include <pybind11/stl.h>

#include "bindings.hpp"

#include "mr/chat.hpp"
#include "mr/model.hpp"

namespace mr::bind {
namespace {

using namespace pybind11::literals;

ChatPrompt apply(const ChatTemplates& self, const std::string& messages_json, const std::string& tools_json,
                 const std::string& tool_choice, bool parallel_tool_calls, const std::string& json_schema,
                 bool add_generation_prompt, bool enable_thinking, const std::string& template_kwargs_json) {
    ChatInput in{messages_json, tools_json, tool_choice, parallel_tool_calls, json_schema, add_generation_prompt,
                 enable_thinking};
    in.template_kwargs_json = template_kwargs_json;
    py::gil_scoped_release nogil;
    return self.apply(in);
}

}  // namespace

void bind_chat(py::module_& m) {
    py::class_<ChatParser, std::shared_ptr<ChatParser>>(m, "ChatParser")
        .def("parse", &ChatParser::parse, "text"_a, "partial"_a, release_gil());
    py::class_<ChatPrompt>(m, "ChatPrompt")
        .def_readonly("prompt", &ChatPrompt::prompt)
        .def_readonly("additional_stops", &ChatPrompt::additional_stops)
        .def_readonly("grammar", &ChatPrompt::grammar)
        .def_readonly("grammar_lazy", &ChatPrompt::grammar_lazy)
        .def_readonly("trigger_patterns", &ChatPrompt::trigger_patterns)
        .def_readonly("trigger_tokens", &ChatPrompt::trigger_tokens)
        .def_readonly("generation_prompt", &ChatPrompt::generation_prompt)
        .def_readonly("format", &ChatPrompt::format)
        .def_readonly("supports_thinking", &ChatPrompt::supports_thinking)
        .def_readonly("thinking_start_tag", &ChatPrompt::thinking_start_tag)
        .def_readonly("thinking_end_tags", &ChatPrompt::thinking_end_tags)
        .def_readonly("parser", &ChatPrompt::parser);
    py::class_<ChatTemplates>(m, "ChatTemplates")
        .def(py::init<const Model&, const std::string&>(), "model"_a, "override_template"_a = "", release_gil())
        .def_property_readonly("source", &ChatTemplates::source)
        .def_property_readonly("caps", &ChatTemplates::caps)
        .def("apply", &apply, "messages_json"_a, "tools_json"_a = "", "tool_choice"_a = "auto",
             "parallel_tool_calls"_a = false, "json_schema"_a = "", "add_generation_prompt"_a = true,
             "enable_thinking"_a = true, "template_kwargs_json"_a = "");
    m.def("json_schema_to_grammar", &json_schema_to_grammar, "schema_json"_a, release_gil());
}

}  // namespace mr::bind
