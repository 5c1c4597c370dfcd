#include "process/channel.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "process/launcher.hpp"
#include "mproc/errors.hpp"
#include "transport/fd_io.hpp"

namespace mproc::detail {
namespace {

constexpr std::size_t kControlSpace = CMSG_SPACE(sizeof(int) * kMaxDescriptorsPerMessage);

// Collects the descriptors of a received message; refuses a truncated set, closing what came.
void collect(msghdr& msg, std::vector<int>& fds) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.push_back(fd);
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        for (int fd : fds) close_fd(fd);
        fds.clear();
        throw ProcessError("descriptors sent with a start request were truncated (is the descriptor table full?)");
    }
}

ssize_t receive_some(int socket, void* data, std::size_t size, std::vector<int>& fds) {
    iovec iov{data, size};
    alignas(cmsghdr) char control[kControlSpace];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
        n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw OSError("receiving a start request", errno);
    collect(msg, fds);
    return n;
}

}  // namespace

bool send_all(int fd, const std::byte* bytes, std::size_t size) {
    std::size_t written = 0;
    try {
        transport::write_all(fd, true, std::span(bytes, size), {}, "sending a start request", written);
    } catch (const OSError& e) {
        if (e.code().value() == EPIPE || e.code().value() == ECONNRESET) return false;
        throw;
    }
    return true;
}

bool read_exact(int fd, void* data, std::size_t size) {
    const std::span<std::byte> into(static_cast<std::byte*>(data), size);
    std::size_t got = 0;
    try {
        while (got < size) {
            const std::ptrdiff_t n = transport::read_some(fd, into.subspan(got), "reading a start request");
            if (n <= 0) return false;  // end of file (the channel is blocking: never kWouldBlock)
            got += static_cast<std::size_t>(n);
        }
    } catch (const OSError&) {
        return false;
    }
    return true;
}

std::vector<std::byte> read_to_end(int fd) {
    std::vector<std::byte> bytes;
    std::size_t used = 0;
    for (;;) {
        if (bytes.size() - used < 65536) bytes.resize(used + 65536);
        const std::ptrdiff_t n =
            transport::read_some(fd, std::span(bytes).subspan(used), "reading the start request");
        if (n == 0) break;
        if (n > 0) used += static_cast<std::size_t>(n);
    }
    bytes.resize(used);
    return bytes;
}

bool send_with_descriptors(int socket, const void* data, std::size_t size, const std::vector<int>& fds) {
    if (fds.size() > static_cast<std::size_t>(kMaxDescriptorsPerMessage))
        throw UsageError("a child can receive at most " + std::to_string(kMaxDescriptorsPerMessage) +
                         " descriptors with its start request");
    iovec iov{const_cast<void*>(data), size};
    alignas(cmsghdr) char control[kControlSpace] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n;
    do {
        n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EPIPE || errno == ECONNRESET) return false;
        throw OSError("sending a start request", errno);
    }
    const auto sent = static_cast<std::size_t>(n);
    return sent == size || send_all(socket, static_cast<const std::byte*>(data) + sent, size - sent);
}

bool receive_with_descriptors(int socket, void* data, std::size_t size, std::vector<int>& fds) {
    std::size_t got = 0;
    while (got < size) {
        ssize_t n = receive_some(socket, static_cast<char*>(data) + got, size - got, fds);
        if (n == 0) {
            if (got == 0) return false;
            throw ProcessError("a start request channel ended inside a message");
        }
        got += static_cast<std::size_t>(n);
    }
    return true;
}

std::vector<std::byte> receive_to_end(int socket, std::vector<int>& fds) {
    std::vector<std::byte> bytes;
    std::size_t used = 0;
    for (;;) {
        if (bytes.size() - used < 65536) bytes.resize(used + 65536);
        ssize_t n = receive_some(socket, bytes.data() + used, bytes.size() - used, fds);
        if (n == 0) break;
        used += static_cast<std::size_t>(n);
    }
    bytes.resize(used);
    return bytes;
}

}  // namespace mproc::detail
