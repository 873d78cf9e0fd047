#include "mr/chat.hpp"

#include "chat.h"
#include "mr/errors.hpp"
#include "mr/model.hpp"

namespace mr {

void ChatTemplates::Deleter::operator()(common_chat_templates* t) const { common_chat_templates_free(t); }

ChatTemplates::ChatTemplates(const Model& model, const std::string& override_template) {
    try {
        templates_.reset(common_chat_templates_init(model.get(), override_template).release());
    } catch (const std::exception& e) {
        throw TemplateError(std::string("the chat template could not be parsed: ") + e.what());
    }
    if (!templates_) throw TemplateError("the chat template could not be parsed");
}

ChatTemplates::~ChatTemplates() = default;

std::string ChatTemplates::source() const { return common_chat_templates_source(templates_.get()); }

ChatPrompt ChatTemplates::apply(const ChatInput& input) const {
    common_chat_templates_inputs in;
    try {
        in.messages = common_chat_msgs_parse_oaicompat(common_json::parse(input.messages_json));
    } catch (const std::exception& e) {
        throw InvalidArgument(std::string("invalid messages: ") + e.what());
    }
    in.add_generation_prompt = input.add_generation_prompt;
    in.use_jinja = true;
    try {
        common_chat_params params = common_chat_templates_apply(templates_.get(), in);
        return ChatPrompt{std::move(params.prompt), std::move(params.additional_stops)};
    } catch (const std::exception& e) {
        throw TemplateError(std::string("the chat template failed: ") + e.what());
    }
}

}  // namespace mr
