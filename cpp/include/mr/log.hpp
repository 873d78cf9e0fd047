// Routes llama.cpp's and ggml's log lines to a sink set by the host (Python's logging).
#pragma once

#include <functional>
#include <string>

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

// Detach the sink (at interpreter exit): llama.cpp goes silent.
void clear_sink();

}  // namespace mr::log
