#include "managers/wire.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include "mproc/errors.hpp"
#include "base/spin.hpp"

namespace mproc::detail {

namespace {
// A buffer that grew for one large message shrinks back after it.
constexpr std::size_t kKeep = 64 * 1024;

// Longer than this between two looks of a spin, the spinner was not running: a yield (or the
// scheduler) ran another thread that had real work. The CPUs have more to run than they can (a
// server serving many clients at once, other programs), and spinning on would take the CPU from
// the threads that have work, so the reader sleeps at once instead. A yield that ran the peer for
// a request's worth of work, or nothing at all, returns well before.
constexpr auto kBusyYield = std::chrono::microseconds(20);
constexpr unsigned kMaxBackoff = 32;

std::uint32_t big_endian_32(const std::byte* p) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}
}  // namespace

void send_frame(int fd, std::vector<std::byte>& frame) {
    const std::size_t payload = frame.size() - kFrameHeader;
    if (payload > 0x7fffffffu) throw UsageError("manager: a message over 2 GiB");
    const std::uint32_t length = __builtin_bswap32(static_cast<std::uint32_t>(payload));
    std::memcpy(frame.data(), &length, 4);
    std::size_t sent = 0;
    while (sent < frame.size()) {
        const ssize_t n = ::send(fd, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw OSError("send", errno);
        }
        sent += static_cast<std::size_t>(n);
    }
}

bool FrameReader::fill(int fd, std::size_t want) {
    if (end_ - begin_ >= want) return true;
    if (begin_ > 0) {
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    if (buffer_.size() < kKeep) buffer_.resize(kKeep);
    while (end_ < want) {
        // Memory grows with the bytes that arrive, not with the length a peer announces.
        if (end_ == buffer_.size()) buffer_.resize(std::min(want, buffer_.size() * 2));
        // The answer to a request usually comes within microseconds from a process that is
        // running: look for it without sleeping for a while (base/spin.hpp), since waking up on
        // another CPU costs tens of microseconds here; but not while the CPUs are oversubscribed.
        ssize_t n = -1;
        int error = 0;
        bool busy = false;
        auto last_look = std::chrono::steady_clock::now();
        const bool spin = spinning_ && quiet_ == 0;
        if (quiet_ > 0) --quiet_;
        const bool arrived = spin && spin_until(spin_, 1, [&] {
            const auto now = std::chrono::steady_clock::now();
            if (now - last_look > kBusyYield) return busy = true;  // ends the spin
            last_look = now;
            n = ::recv(fd, buffer_.data() + end_, buffer_.size() - end_, MSG_DONTWAIT);
            if (n >= 0) return true;
            error = errno;
            return error != EAGAIN && error != EWOULDBLOCK && error != EINTR;
        }) && !busy;
        // After a spin that found the CPUs busy, the next 1, 2, 4, ... 32 waits sleep at once;
        // one that sees its frame arrive ends that.
        if (busy) {
            backoff_ = std::min(kMaxBackoff, backoff_ == 0 ? 1u : backoff_ * 2);
            quiet_ = backoff_;
        } else if (arrived) {
            backoff_ = 0;
        }
        if (arrived && n < 0) {
            if (error == ENOTSOCK) {
                spinning_ = false;  // not a socket: read it the plain way from now on
                continue;
            }
            throw OSError("recv", error);
        }
        if (!arrived) n = ::read(fd, buffer_.data() + end_, buffer_.size() - end_);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw OSError("recv", errno);
        }
        if (n == 0) return false;
        end_ += static_cast<std::size_t>(n);
    }
    return true;
}

std::span<const std::byte> FrameReader::next(int fd, std::size_t max_size) {
    if (begin_ == end_) {
        begin_ = end_ = 0;
        if (buffer_.size() > kKeep) std::vector<std::byte>(kKeep).swap(buffer_);
    }
    if (!fill(fd, 4)) {
        if (end_ == begin_) throw EOFError("end of file: the other end of the connection is closed");
        throw ProtocolError("got end of file during message");
    }
    std::size_t header = 4;
    const auto length32 = static_cast<std::int32_t>(big_endian_32(buffer_.data() + begin_));
    std::uint64_t length = 0;
    if (length32 >= 0) {
        length = static_cast<std::uint64_t>(length32);
    } else if (length32 == -1) {
        if (!fill(fd, 12)) throw ProtocolError("got end of file during message");
        length = (std::uint64_t{big_endian_32(buffer_.data() + begin_ + 4)} << 32) |
                 big_endian_32(buffer_.data() + begin_ + 8);
        header = 12;
    } else {
        throw ProtocolError(fmt::format("bad message length {}", length32));
    }
    if (length > max_size) throw ProtocolError(fmt::format("bad message length {} (the limit is {})", length, max_size));
    if (!fill(fd, header + length)) throw ProtocolError("got end of file during message");
    std::span<const std::byte> payload(buffer_.data() + begin_ + header, length);
    begin_ += header + length;
    return payload;
}

}  // namespace mproc::detail
