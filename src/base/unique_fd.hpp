#pragma once
// UniqueFd: the one owner of a file descriptor inside mproc, as std::unique_ptr is of memory.
// Closing goes through close_fd, the one place that calls close(2): on Linux the descriptor is
// released even when close reports EINTR, so retrying could close a descriptor another thread has
// just opened; close_fd therefore never retries and ignores the result.
//
// Public types that hand their descriptor to users (Connection::fileno(), a Process's sentinel)
// keep an int at the API and a UniqueFd inside.
#include <utility>

namespace mproc::detail {

void close_fd(int fd) noexcept;

class UniqueFd {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    // Gives up ownership: the caller closes it (or hands it on).
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    // Closes the current descriptor (if any) and owns `fd`.
    void reset(int fd = -1) noexcept {
        const int old = std::exchange(fd_, fd);
        if (old >= 0 && old != fd) close_fd(old);
    }

private:
    int fd_ = -1;
};

// A duplicate of `fd` at or above 3 with FD_CLOEXEC set (F_DUPFD_CLOEXEC). OSError naming `what`
// when it fails (EMFILE: the descriptor table is full).
UniqueFd duplicate_fd(int fd, const char* what);

}  // namespace mproc::detail
