#include "mr/wire.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>

#include "mr/errors.hpp"

namespace mr {

WireWriter::WireWriter(int fd, bool chunked, size_t log_limit)
    : fd_(::dup(fd)), chunked_(chunked), log_limit_(log_limit) {
    if (fd_ < 0) throw InvalidArgument("cannot use the connection's socket (dup failed)");
}

WireWriter::~WireWriter() { ::close(fd_); }

bool WireWriter::take(std::string& frame, bool& rest) {
    rest = false;
    switch (state_) {
        case State::Held:
            held_.push_back(std::move(frame));
            frame.clear();
            return true;
        case State::Open:
            return send(frame, rest);
        case State::Released:
            return false;
    }
    return false;
}

std::vector<std::string> WireWriter::decide(bool open, bool& rest) {
    rest = false;
    std::vector<std::string> back;
    if (state_ != State::Held) return back;
    state_ = open ? State::Open : State::Released;
    for (std::string& frame : held_) {
        if (state_ == State::Open && send(frame, rest)) continue;
        back.push_back(std::move(frame));  // after a short send the writer is released: in order
    }
    held_.clear();
    return back;
}

// Whole or not at all from the engine's side: what the socket does not take now is handed back
// (never a blocking wait on one client inside the step every stream shares).
bool WireWriter::send(std::string& frame, bool& rest) {
    size_t sent = 0;
    while (sent < frame.size()) {
        const ssize_t n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<size_t>(n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            break;  // EAGAIN: the client reads slowly; anything else: the connection is gone
        }
    }
    if (sent > 0) note(frame);  // a frame begun here is logged whole: the server sends its rest
    rest = sent > 0 && sent < frame.size();
    if (sent == frame.size()) {
        frame.clear();
        return true;
    }
    frame.erase(0, sent);
    state_ = State::Released;
    return false;
}

void WireWriter::note(const std::string& frame) {
    times_.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count());
    size_t start = 0, end = frame.size();
    if (chunked_) {  // "<size hex>\r\n" payload "\r\n"
        const size_t header = frame.find("\r\n");
        start = header == std::string::npos ? 0 : header + 2;
        end = end >= start + 2 ? end - 2 : start;
    }
    bytes_ += end - start;
    if (log_.size() < log_limit_) log_.append(frame, start, std::min(end - start, log_limit_ - log_.size()));
}

}  // namespace mr
