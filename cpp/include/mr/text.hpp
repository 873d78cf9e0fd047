// A request's output as text: token bytes in, whole UTF-8 characters out, cut at stop strings.
//
// Runs in the engine step, so the event loop receives text that is ready to send. Decoding
// follows Python's `bytes.decode("utf-8", "replace")`: each maximal invalid subsequence becomes
// one U+FFFD; a character split across tokens is held back until its last byte arrives. Text that
// could still be the start of a stop string is held back too; a stop string and everything after
// it are never emitted.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mr {

class TextAssembler {
public:
    explicit TextAssembler(std::vector<std::string> stops = {});

    // The text that is safe to emit after `piece` (possibly empty).
    std::string feed(std::string_view piece);
    // The end of the output: held text, and an incomplete last character as U+FFFD; with `cut`
    // (the output was cut by a length limit, mid-character) that character is dropped instead.
    std::string flush(bool cut = false);

    bool stopped() const { return matched_ >= 0; }
    int matched() const { return matched_; }  // index of the stop string that ended the text, or -1

private:
    void decode(std::string_view bytes, bool final);  // complete characters of pending_ + bytes -> held_
    std::string release();                             // what of held_ no stop string can claim

    std::vector<std::string> stops_;
    size_t longest_stop_ = 0;
    std::string pending_;  // the bytes of an incomplete character
    std::string held_;     // decoded text not yet emitted
    int matched_ = -1;
};

// One streamed chunk's bytes around its text: `head` + the text as a JSON string body + `tail`,
// e.g. an SSE chunk of an OpenAI chat stream. With `chunked`, wrapped as one HTTP/1.1 chunk.
struct FrameFormat {
    std::string head;
    std::string tail;
    bool chunked = false;

    bool empty() const { return head.empty() && tail.empty(); }
    std::string render(std::string_view text) const;
};

// Appends `text` (valid UTF-8) as the inside of a JSON string: quotes, backslashes and control
// characters escaped, everything else as is (msgspec's and json.dumps(ensure_ascii=False)'s form).
void append_json_string_body(std::string& out, std::string_view text);

}  // namespace mr
