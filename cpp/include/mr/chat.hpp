// Chat templates through llama.cpp's common library (the code llama-server runs): OpenAI-shaped
// messages and tools in, the rendered prompt plus the grammar and parser for the answer out.
// Its Jinja engine is sandboxed; nothing here ever runs a template in Python.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

struct common_chat_templates;
struct common_chat_parser_params;

namespace mr {

class Model;

struct ChatInput {
    std::string messages_json;          // OpenAI messages array
    std::string tools_json;             // OpenAI tools array, "" for none
    std::string tool_choice = "auto";   // auto | none | required
    bool parallel_tool_calls = false;
    std::string json_schema;            // response_format schema, "" for none
    bool add_generation_prompt = true;
    bool enable_thinking = true;
    std::string template_kwargs_json;   // JSON object of extra template variables, "" for none
};

// Parses the model's output back into an assistant message (content, reasoning, tool calls).
class ChatParser {
public:
    explicit ChatParser(std::unique_ptr<common_chat_parser_params> params);
    ~ChatParser();
    ChatParser(const ChatParser&) = delete;
    ChatParser& operator=(const ChatParser&) = delete;

    // The message as OpenAI JSON. `partial`: the output may stop mid-way (streaming).
    std::string parse(const std::string& text, bool partial) const;

private:
    std::unique_ptr<common_chat_parser_params> params_;
};

struct ChatPrompt {
    std::string prompt;
    std::vector<std::string> additional_stops;
    std::string grammar;                     // "" when sampling is unconstrained
    bool grammar_lazy = false;               // the grammar applies from a trigger on
    std::vector<std::string> trigger_patterns;
    std::vector<int> trigger_tokens;
    std::string generation_prompt;           // the prompt's tail that the grammar also covers
    std::string format;                      // llama.cpp's name of the chat format
    bool supports_thinking = false;          // the format separates reasoning from content
    std::string thinking_start_tag;          // e.g. "<think>" (for a reasoning budget)
    std::vector<std::string> thinking_end_tags;
    std::shared_ptr<ChatParser> parser;
};

class ChatTemplates {
public:
    // override_template: "" to use the model's own (or llama.cpp's default when it has none).
    ChatTemplates(const Model& model, const std::string& override_template);
    ~ChatTemplates();
    ChatTemplates(const ChatTemplates&) = delete;
    ChatTemplates& operator=(const ChatTemplates&) = delete;

    // Throws InvalidArgument for malformed messages or tools and TemplateError when rendering fails.
    ChatPrompt apply(const ChatInput& input) const;
    std::string source() const;
    // What the template can express: supports_tools, supports_tool_calls, supports_system_role, ...
    std::map<std::string, bool> caps() const;

private:
    struct Deleter {
        void operator()(common_chat_templates* t) const;
    };
    std::unique_ptr<common_chat_templates, Deleter> templates_;
};

// llama.cpp's JSON-schema -> GBNF conversion. Throws InvalidArgument for a schema it cannot convert.
std::string json_schema_to_grammar(const std::string& schema_json);

}  // namespace mr
