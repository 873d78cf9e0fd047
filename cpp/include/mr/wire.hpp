#pragma once
// A streamed request's frames written to the client's socket by the engine thread itself.
//
// The server renders no token: the engine renders each one as the bytes that go on the wire
// (FrameFormat) and, for a request handed a socket, sends them from its own thread right after
// the step that made them. A streamed token then reaches the client without waking Python at
// all; the server's event loop hears of the request again only at its end.

#include <cstddef>
#include <string>
#include <vector>

namespace mr {

// One request's connection. Owns a duplicate of the socket: the server may close its own at any
// moment, and a closed descriptor number could be reused by another client's connection.
//
// Frames are held until the server has sent the response head through its HTTP stack and
// decides: open, and the held and later frames are sent here; released, they go back to the
// server as event frames. A frame the socket cannot take whole (a slow client, a closed
// connection) releases the writer too: the rest of it, and everything after, goes through the
// server, which queues it behind what is on the wire or notices that the client is gone.
class WireWriter {
public:
    enum class State { Held, Open, Released };

    // `chunked`: frames are HTTP/1.1 chunks (their framing is left out of `log`); `log_limit`:
    // how many payload bytes to keep for the server's request log.
    WireWriter(int fd, bool chunked, size_t log_limit);
    ~WireWriter();
    WireWriter(const WireWriter&) = delete;
    WireWriter& operator=(const WireWriter&) = delete;

    State state() const { return state_; }

    // A frame of the request. True: sent or held, nothing to publish. False: publish `frame`
    // (the writer is released; when `rest` is set, `frame` is the unsent end of a frame whose
    // start is already on the wire).
    bool take(std::string& frame, bool& rest);

    // The server's decision. Held frames go out (open) or come back to be published (released),
    // in order; an open whose first frames do not fit also comes back as in take().
    std::vector<std::string> decide(bool open, bool& rest);

    const std::vector<double>& times() const { return times_; }  // CLOCK_MONOTONIC s per frame sent
    const std::string& log() const { return log_; }             // payload sent, up to log_limit
    size_t bytes() const { return bytes_; }                      // payload bytes sent

private:
    bool send(std::string& frame, bool& rest);
    void note(const std::string& frame);

    int fd_;
    bool chunked_;
    size_t log_limit_;
    State state_ = State::Held;
    std::vector<std::string> held_;
    std::vector<double> times_;
    std::string log_;
    size_t bytes_ = 0;
};

}  // namespace mr
