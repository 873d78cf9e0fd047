// Routes llama.cpp's and ggml's log lines to a sink set by the host (Python's logging).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace mr::log {

// level: 1 debug, 2 info, 3 warning, 4 error (ggml's numbering, continuation lines folded in).
using Sink = std::function<void(int level, const std::string& message)>;

// Takes over llama.cpp's log with no sink yet: silent until set_sink (quiet by default).
void install();

// Lines below min_level are dropped in C++ without ever reaching the sink.
void set_sink(Sink sink, int min_level);
void set_level(int min_level);
// The last error-level line logged on this thread (llama.cpp explains load failures there),
// cleared by the call.
std::string take_last_error();

// Collects, on the constructing thread and for its lifetime, the log lines that contain
// `needle`, whatever the log level (llama.cpp states some facts only in its log).
class Capture {
public:
    explicit Capture(std::string needle);
    ~Capture();
    Capture(const Capture&) = delete;
    Capture& operator=(const Capture&) = delete;
    const std::vector<std::string>& lines() const { return lines_; }
    void offer(const char* text);

private:
    std::string needle_;
    std::vector<std::string> lines_;
    Capture* outer_;
};

// Detach the sink (at interpreter exit): llama.cpp goes silent.
void clear_sink();

}  // namespace mr::log
