#include "transport/fd_io.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "mproc/errors.hpp"

namespace mproc::transport {

namespace {

// Blocks SIGPIPE in the calling thread for its lifetime, unless it already was blocked. A write
// to a pipe whose reader is gone raises SIGPIPE in the writing thread; with the signal blocked it
// stays pending instead of killing the process, and consume_pending() removes it so that it is
// not delivered when the mask is restored.
class SigpipeBlocked {
public:
    SigpipeBlocked() noexcept {
        sigemptyset(&sigpipe_);
        sigaddset(&sigpipe_, SIGPIPE);
        ::pthread_sigmask(SIG_BLOCK, &sigpipe_, &previous_);
        was_blocked_ = sigismember(&previous_, SIGPIPE) == 1;
    }
    ~SigpipeBlocked() {
        if (!was_blocked_) ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
    }
    SigpipeBlocked(const SigpipeBlocked&) = delete;
    SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

    // After EPIPE. When the caller had SIGPIPE blocked itself, the pending signal is its own.
    void consume_pending() noexcept {
        if (was_blocked_) return;
        const timespec no_wait{};
        while (::sigtimedwait(&sigpipe_, nullptr, &no_wait) < 0 && errno == EINTR) {
        }
    }

private:
    sigset_t sigpipe_{};
    sigset_t previous_{};
    bool was_blocked_ = false;
};

timespec to_timespec(std::chrono::nanoseconds ns) {
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(ns);
    return timespec{static_cast<time_t>(seconds.count()), static_cast<long>((ns - seconds).count())};
}

}  // namespace

bool is_socket(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) < 0) throw OSError("fstat", errno);
    return S_ISSOCK(st.st_mode);
}

std::ptrdiff_t read_some(int fd, std::span<std::byte> into, const char* what) {
    for (;;) {
        const ssize_t n = ::read(fd, into.data(), into.size());
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return kWouldBlock;
        throw OSError(what, errno);
    }
}

std::ptrdiff_t write_some(int fd, bool socket, std::span<const std::byte> first, std::span<const std::byte> second,
                          const char* what) {
    iovec parts[2] = {{const_cast<std::byte*>(first.data()), first.size()},
                      {const_cast<std::byte*>(second.data()), second.size()}};
    const int count = second.empty() ? 1 : 2;
    for (;;) {
        ssize_t n;
        int error;
        if (second.empty() && socket) {
            n = ::send(fd, first.data(), first.size(), MSG_NOSIGNAL);
            error = errno;
        } else if (socket) {
            msghdr message{};
            message.msg_iov = parts;
            message.msg_iovlen = static_cast<std::size_t>(count);
            n = ::sendmsg(fd, &message, MSG_NOSIGNAL);
            error = errno;
        } else {
            SigpipeBlocked guard;
            n = second.empty() ? ::write(fd, first.data(), first.size()) : ::writev(fd, parts, count);
            error = errno;
            if (n < 0 && error == EPIPE) guard.consume_pending();
        }
        if (n >= 0) return n;
        if (error == EINTR) continue;
        if (error == EAGAIN || error == EWOULDBLOCK) return kWouldBlock;
        throw OSError(what, error);
    }
}

void write_all(int fd, bool socket, std::span<const std::byte> first, std::span<const std::byte> second,
               const char* what, std::size_t& written, const Deadline& deadline) {
    written = 0;
    while (!first.empty() || !second.empty()) {
        const std::ptrdiff_t n = write_some(fd, socket, first, second, what);
        if (n == kWouldBlock) {
            if (wait_fd(fd, POLLOUT, deadline) == Readiness::timed_out) throw TimeoutError("timed out waiting to send");
            continue;
        }
        auto advance = static_cast<std::size_t>(n);
        written += advance;
        const std::size_t from_first = advance < first.size() ? advance : first.size();
        first = first.subspan(from_first);
        second = second.subspan(advance - from_first);
    }
}

Readiness wait_fd(int fd, short events, const Deadline& deadline) {
    pollfd watched{fd, events, 0};
    for (;;) {
        const auto left = deadline.remaining();
        timespec ts{};
        if (left) ts = to_timespec(*left);
        const int n = ::ppoll(&watched, 1, left ? &ts : nullptr, nullptr);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw OSError("poll", errno);
        }
        if (n == 0) {
            if (left && left->count() == 0) return Readiness::timed_out;
            continue;  // woken early (the clock moved): wait for what remains
        }
        if (watched.revents & POLLNVAL) throw OSError("poll", EBADF);
        return Readiness::ready;
    }
}

void set_nonblocking(int fd, bool nonblocking) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0) throw OSError("fcntl(F_GETFL)", errno);
    const int wanted = nonblocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) < 0) throw OSError("fcntl(F_SETFL)", errno);
}

}  // namespace mproc::transport
