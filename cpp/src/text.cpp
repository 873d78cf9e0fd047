#include "mr/text.hpp"

#include <algorithm>
#include <cstdio>

namespace mr {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Bytes a character starting with `lead` takes (0: never a lead byte).
int sequence_length(unsigned char lead) {
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0;
}

// Whether `byte` may follow `lead` as continuation number `index` (1-based); the second byte's
// range is narrower after E0, ED, F0 and F4 (no overlongs, surrogates or code points > U+10FFFF).
bool continues(unsigned char lead, int index, unsigned char byte) {
    if (index == 1) {
        switch (lead) {
            case 0xE0: return byte >= 0xA0 && byte <= 0xBF;
            case 0xED: return byte >= 0x80 && byte <= 0x9F;
            case 0xF0: return byte >= 0x90 && byte <= 0xBF;
            case 0xF4: return byte >= 0x80 && byte <= 0x8F;
            default: break;
        }
    }
    return byte >= 0x80 && byte <= 0xBF;
}

}  // namespace

TextAssembler::TextAssembler(std::vector<std::string> stops) {
    for (auto& s : stops) {
        if (s.empty()) continue;
        longest_stop_ = std::max(longest_stop_, s.size());
        stops_.push_back(std::move(s));
    }
}

std::string TextAssembler::feed(std::string_view piece) {
    if (stopped()) return {};
    decode(piece, false);
    return release();
}

std::string TextAssembler::flush(bool cut) {
    if (stopped()) return {};
    if (cut) pending_.clear();
    decode({}, true);
    std::string out = release();
    out += held_;  // the end: nothing can complete a stop string any more
    held_.clear();
    return out;
}

void TextAssembler::decode(std::string_view bytes, bool final) {
    std::string data;
    std::string_view in = bytes;
    if (!pending_.empty()) {
        data = pending_ + std::string(bytes);
        pending_.clear();
        in = data;
    }
    size_t i = 0;
    while (i < in.size()) {
        const auto lead = static_cast<unsigned char>(in[i]);
        const int len = sequence_length(lead);
        if (len == 1) {
            held_ += in[i++];
            continue;
        }
        if (len == 0) {  // a stray continuation byte or an invalid lead
            held_ += kReplacement;
            ++i;
            continue;
        }
        int have = 1;
        while (have < len && i + have < in.size() &&
               continues(lead, have, static_cast<unsigned char>(in[i + have]))) {
            ++have;
        }
        if (have == len) {
            held_.append(in.substr(i, len));
            i += len;
        } else if (i + have == in.size() && !final) {  // valid so far: the rest is in a later piece
            pending_.assign(in.substr(i));
            return;
        } else {  // broken (or cut off at the end): one U+FFFD for the maximal valid prefix
            held_ += kReplacement;
            i += have;
        }
    }
}

std::string TextAssembler::release() {
    if (stops_.empty()) {
        std::string out;
        out.swap(held_);
        return out;
    }
    size_t cut = std::string::npos;
    for (size_t s = 0; s < stops_.size(); ++s) {
        const size_t at = held_.find(stops_[s]);
        if (at < cut) {
            cut = at;
            matched_ = static_cast<int>(s);
        }
    }
    if (cut != std::string::npos) {
        std::string out = held_.substr(0, cut);
        held_.clear();
        pending_.clear();
        return out;
    }
    // Hold back the longest tail that is the start of some stop string. Stop strings are whole
    // characters, so the cut never splits one.
    size_t keep = 0;
    const size_t most = std::min(held_.size(), longest_stop_ - 1);
    for (size_t n = most; n > 0 && keep == 0; --n) {
        const std::string_view tail(held_.data() + held_.size() - n, n);
        for (const auto& stop : stops_) {
            if (stop.compare(0, n, tail) == 0) {
                keep = n;
                break;
            }
        }
    }
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
}

void append_json_string_body(std::string& out, std::string_view text) {
    static const char* hex = "0123456789abcdef";
    for (const char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    out += "\\u00";
                    out += hex[(c >> 4) & 0xF];
                    out += hex[c & 0xF];
                } else {
                    out += c;
                }
        }
    }
}

std::string FrameFormat::render(std::string_view text) const {
    std::string body;
    body.reserve(head.size() + text.size() + 8 + tail.size());
    body += head;
    append_json_string_body(body, text);
    body += tail;
    if (!chunked) return body;
    char size[20];
    const int n = std::snprintf(size, sizeof(size), "%zx\r\n", body.size());
    std::string out;
    out.reserve(body.size() + n + 2);
    out.append(size, n);
    out += body;
    out += "\r\n";
    return out;
}

}  // namespace mr
