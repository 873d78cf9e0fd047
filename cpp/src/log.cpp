#include "mr/log.hpp"

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>

#include "llama.h"
#include "mtmd-helper.h"

namespace mr::log {
namespace {

std::mutex g_mutex;
std::shared_ptr<Sink> g_sink;
std::atomic<int> g_min_level{GGML_LOG_LEVEL_WARN};
int g_last_level = GGML_LOG_LEVEL_INFO;  // for GGML_LOG_LEVEL_CONT lines
std::string g_pending;                   // a line is forwarded once its newline arrives
thread_local std::string t_last_error;
thread_local Capture* t_capture = nullptr;

void callback(ggml_log_level level, const char* text, void* /*user*/) {
    if (t_capture != nullptr && text != nullptr) t_capture->offer(text);
    std::shared_ptr<Sink> sink;
    std::string line;
    int effective;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        effective = level == GGML_LOG_LEVEL_CONT ? g_last_level : static_cast<int>(level);
        g_last_level = effective;
        if (effective == GGML_LOG_LEVEL_ERROR && text != nullptr && text[0] != '\0') {
            t_last_error = text;
            while (!t_last_error.empty() && t_last_error.back() == '\n') t_last_error.pop_back();
        }
        if (effective < g_min_level.load() || !g_sink) {
            return;
        }
        g_pending += text;
        if (g_pending.empty() || g_pending.back() != '\n') {
            return;
        }
        g_pending.pop_back();
        line.swap(g_pending);
        sink = g_sink;
    }
    (*sink)(effective, line);  // outside the lock: the sink may take the GIL
}

}  // namespace

void set_sink(Sink sink, int min_level) {
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        g_sink = std::make_shared<Sink>(std::move(sink));
        g_min_level = min_level;
    }
    install();
}

// libmtmd (the multimodal projector) logs through a callback of its own.
void install() {
    llama_log_set(callback, nullptr);
    mtmd_helper_log_set(callback, nullptr);
}

void set_level(int min_level) { g_min_level = min_level; }

std::string take_last_error() {
    std::string out;
    out.swap(t_last_error);
    return out;
}

Capture::Capture(std::string needle) : needle_(std::move(needle)), outer_(t_capture) { t_capture = this; }

Capture::~Capture() { t_capture = outer_; }

void Capture::offer(const char* text) {
    if (std::strstr(text, needle_.c_str()) != nullptr) lines_.emplace_back(text);
    if (outer_ != nullptr) outer_->offer(text);
}

void clear_sink() {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_sink.reset();
}

}  // namespace mr::log
