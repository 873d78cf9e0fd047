// Chat templates through llama.cpp's common library (the code llama-server runs): messages in
// OpenAI's JSON shape in, the rendered prompt out. Its Jinja engine is sandboxed; nothing here
// ever runs a template in Python.
#pragma once

#include <memory>
#include <string>
#include <vector>

struct common_chat_templates;

namespace mr {

class Model;

struct ChatInput {
    std::string messages_json;  // OpenAI messages array
    bool add_generation_prompt = true;
};

struct ChatPrompt {
    std::string prompt;
    std::vector<std::string> additional_stops;
};

class ChatTemplates {
public:
    // override_template: "" to use the model's own (or llama.cpp's default when it has none).
    ChatTemplates(const Model& model, const std::string& override_template);
    ~ChatTemplates();
    ChatTemplates(const ChatTemplates&) = delete;
    ChatTemplates& operator=(const ChatTemplates&) = delete;

    // Throws InvalidArgument for malformed messages and TemplateError when rendering fails.
    ChatPrompt apply(const ChatInput& input) const;
    std::string source() const;

private:
    struct Deleter {
        void operator()(common_chat_templates* t) const;
    };
    std::unique_ptr<common_chat_templates, Deleter> templates_;
};

}  // namespace mr
