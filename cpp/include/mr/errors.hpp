// mr's C++ exceptions. The binding maps each to the Python class of the same role in mr.errors.
#pragma once

#include <stdexcept>
#include <string>

namespace mr {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A parameter or input is out of range or malformed (Python: InvalidArgumentError).
struct InvalidArgument : Error {
    using Error::Error;
};

// The model file is missing, not a GGUF, truncated, or refused by llama.cpp (ModelLoadError).
struct ModelLoadError : Error {
    using Error::Error;
};

// The prompt plus the requested tokens do not fit the context (ContextLengthError).
struct ContextOverflow : Error {
    ContextOverflow(int n_requested, int n_ctx);
    int n_requested;
    int n_ctx;
};

// The request queue is at its cap (OverloadedError).
struct Overloaded : Error {
    using Error::Error;
};

// Work stopped from outside before it finished: cancelled, e.g. at shutdown (CutShortError).
struct Cancelled : Error {
    using Error::Error;
};

// A chat template could not be rendered (TemplateError).
struct TemplateError : Error {
    using Error::Error;
};

}  // namespace mr
