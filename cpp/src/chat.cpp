#include "mr/chat.hpp"

#include "chat.h"
#include "jinja/value.h"
#include "json-schema-to-grammar.h"
#include "mr/errors.hpp"
#include "mr/model.hpp"

namespace mr {
namespace {

common_json parse_json(const std::string& text, const char* what) {
    try {
        return common_json::parse(text);
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("invalid ") + what + ": " + e.what());
    }
}

common_chat_tool_choice tool_choice_of(const std::string& name) {
    if (name == "auto" || name.empty()) return COMMON_CHAT_TOOL_CHOICE_AUTO;
    if (name == "none") return COMMON_CHAT_TOOL_CHOICE_NONE;
    if (name == "required") return COMMON_CHAT_TOOL_CHOICE_REQUIRED;
    throw InvalidArgument("tool_choice must be auto, none or required");
}

// The lazy grammar's triggers as regular expressions and token ids, as llama.cpp's sampler wants.
void add_triggers(const common_chat_params& params, ChatPrompt& out) {
    for (const auto& t : params.grammar_triggers) {
        switch (t.type) {
            case COMMON_GRAMMAR_TRIGGER_TYPE_WORD:
                out.trigger_patterns.push_back(regex_escape(t.value));
                break;
            case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN:
                out.trigger_patterns.push_back(t.value);
                break;
            case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: {
                const std::string& p = t.value;
                out.trigger_patterns.push_back(p.empty() ? "^$"
                                                         : (p.front() != '^' ? "^" : "") + p + (p.back() != '$' ? "$" : ""));
                break;
            }
            case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN:
                out.trigger_tokens.push_back(t.token);
                break;
        }
    }
}

}  // namespace

ChatParser::ChatParser(std::unique_ptr<common_chat_parser_params> params) : params_(std::move(params)) {}
ChatParser::~ChatParser() = default;

std::string ChatParser::parse(const std::string& text, bool partial) const {
    try {
        common_chat_msg msg = common_chat_parse(text, partial, *params_);
        msg.role = "assistant";
        return msg.to_json_oaicompat().dump();
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("the output could not be parsed: ") + e.what());
    }
}

void ChatTemplates::Deleter::operator()(common_chat_templates* t) const { common_chat_templates_free(t); }

ChatTemplates::ChatTemplates(const Model& model, const std::string& override_template) {
    // One render budget (vendor/patches/0008) for the whole load: it renders the template several
    // times over to learn what it supports.
    jinja::render_scope budget;
    try {
        templates_.reset(common_chat_templates_init(model.get(), override_template).release());
    } catch (const std::exception& e) {
        throw TemplateError(std::string("the chat template could not be parsed: ") + e.what());
    }
    if (!templates_) throw TemplateError("the chat template could not be parsed");
}

ChatTemplates::~ChatTemplates() = default;

std::string ChatTemplates::source() const { return common_chat_templates_source(templates_.get()); }

std::map<std::string, bool> ChatTemplates::caps() const { return common_chat_templates_get_caps(templates_.get()); }

ChatPrompt ChatTemplates::apply(const ChatInput& input) const {
    common_chat_templates_inputs in;
    try {
        in.messages = common_chat_msgs_parse_oaicompat(parse_json(input.messages_json, "messages"));
        if (!input.tools_json.empty()) {
            in.tools = common_chat_tools_parse_oaicompat(parse_json(input.tools_json, "tools"));
        }
    } catch (const InvalidArgument&) {
        throw;
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("invalid messages or tools: ") + e.what());
    }
    in.tool_choice = tool_choice_of(input.tool_choice);
    in.parallel_tool_calls = input.parallel_tool_calls;
    in.json_schema = input.json_schema;
    in.add_generation_prompt = input.add_generation_prompt;
    in.enable_thinking = input.enable_thinking;
    if (!input.template_kwargs_json.empty()) {
        const common_json kwargs = parse_json(input.template_kwargs_json, "chat_template_kwargs");
        if (!kwargs.is_object()) throw InvalidArgument("chat_template_kwargs must be an object");
        for (const auto& [key, value] : kwargs.items()) in.chat_template_kwargs[key] = value.dump();
    }
    in.reasoning_format = COMMON_REASONING_FORMAT_AUTO;
    in.use_jinja = true;
    common_chat_params params;
    jinja::render_scope budget;  // one budget for the prompt and the format analysis's renders
    try {
        params = common_chat_templates_apply(templates_.get(), in);
    } catch (const std::exception& e) {
        throw TemplateError(std::string("the chat template failed: ") + e.what());
    }
    ChatPrompt out;
    out.prompt = std::move(params.prompt);
    out.additional_stops = params.additional_stops;
    out.grammar = params.grammar;
    out.grammar_lazy = params.grammar_lazy;
    out.generation_prompt = params.generation_prompt;
    out.format = common_chat_format_name(params.format);
    out.supports_thinking = params.supports_thinking;
    out.thinking_start_tag = params.thinking_start_tag;
    out.thinking_end_tags = params.thinking_end_tags;
    add_triggers(params, out);
    auto parser = std::make_unique<common_chat_parser_params>(params);
    parser->reasoning_format = COMMON_REASONING_FORMAT_AUTO;
    parser->parse_tool_calls = !in.tools.empty() && in.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE;
    if (!params.parser.empty()) parser->parser.load(params.parser);
    out.parser = std::make_shared<ChatParser>(std::move(parser));
    return out;
}

std::string json_schema_to_grammar(const std::string& schema_json) {
    common_json schema = parse_json(schema_json, "JSON schema");
    try {
        return ::json_schema_to_grammar(schema);
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("unsupported JSON schema: ") + e.what());
    }
}

}  // namespace mr
