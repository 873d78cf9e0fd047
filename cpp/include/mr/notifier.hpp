// A file descriptor that becomes readable when the engine has events, so an asyncio loop can
// watch it (loop.add_reader) instead of polling. eventfd on Linux, a pipe elsewhere.
#pragma once

namespace mr {

class Notifier {
public:
    Notifier();
    ~Notifier();
    Notifier(const Notifier&) = delete;
    Notifier& operator=(const Notifier&) = delete;

    int fd() const { return read_fd_; }
    void notify();  // make fd() readable (idempotent until cleared)
    void clear();   // drain: fd() is not readable until the next notify()

private:
    int read_fd_ = -1;
    int write_fd_ = -1;
};

}  // namespace mr
