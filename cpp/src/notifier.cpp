#include "mr/notifier.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

#if defined(__linux__)
#include <sys/eventfd.h>
#endif

namespace mr {

Notifier::Notifier() {
#if defined(__linux__)
    read_fd_ = write_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (read_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
#else
    int fds[2];
    if (pipe(fds) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    for (int fd : fds) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    read_fd_ = fds[0];
    write_fd_ = fds[1];
#endif
}

Notifier::~Notifier() {
    if (write_fd_ >= 0 && write_fd_ != read_fd_) close(write_fd_);
    if (read_fd_ >= 0) close(read_fd_);
}

void Notifier::notify() {
    const uint64_t one = 1;
    // A full pipe or a saturated eventfd already means "readable": the error can be ignored.
    [[maybe_unused]] ssize_t n = write(write_fd_, &one, write_fd_ == read_fd_ ? sizeof(one) : 1);
}

void Notifier::clear() {
    uint64_t buf[8];
    while (read(read_fd_, buf, sizeof(buf)) > 0) {
    }
}

}  // namespace mr
