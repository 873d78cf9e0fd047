#include "mr/errors.hpp"

namespace mr {

ContextOverflow::ContextOverflow(int requested, int ctx)
    : Error("this request needs " + std::to_string(requested) + " tokens but the context holds " +
            std::to_string(ctx) + " tokens"),
      n_requested(requested),
      n_ctx(ctx) {}

}  // namespace mr
