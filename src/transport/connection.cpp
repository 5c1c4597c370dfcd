// Connection, Pipe and connection::wait over file descriptors.
#include "mproc/connection.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include <fmt/format.h>

#include "transport/fd_io.hpp"
#include "transport/frame.hpp"
#include "transport/framed_channel.hpp"

namespace mproc {

namespace {

using transport::kLongLengthSize;
using transport::kShortHeaderSize;

// Memory for a message is reserved up to this much at once, then grows with the bytes that
// actually arrive (doubling), so that a peer announcing a large length and sending little costs
// little. Messages up to this size are read with one allocation.
constexpr std::size_t kEagerAllocation = std::size_t{16} << 20;

// The scratch buffers of send<T>/recv<T> keep their capacity up to this much between messages.
constexpr std::size_t kScratchKeep = std::size_t{4} << 20;

// The largest length the 8-byte form may carry: lengths travel as signed 64-bit in Python's
// reader as well, and anything near this is beyond every limit anyway.
constexpr std::uint64_t kMaxFrameLength = static_cast<std::uint64_t>(INT64_MAX);

}  // namespace

// Where a frame's bytes come from: first what recv<T> read ahead, then the descriptor, read
// exactly (never past the frame: other processes may read the same descriptor after it).
struct FrameSource {
    transport::FramedChannel channel;
    std::span<const std::byte> ahead;

    // One read's worth (> 0), 0 at end of file. Blocks on a non-blocking descriptor.
    std::size_t read_some(std::span<std::byte> into) {
        if (!ahead.empty()) {
            const std::size_t n = std::min(into.size(), ahead.size());
            std::copy_n(ahead.begin(), n, into.begin());
            ahead = ahead.subspan(n);
            return n;
        }
        return channel.read_some(into);
    }

    // Fills `into` unless end of file comes first; returns the bytes filled.
    std::size_t read_full(std::span<std::byte> into) {
        std::size_t filled = 0;
        while (filled < into.size()) {
            const std::size_t n = read_some(into.subspan(filled));
            if (n == 0) break;
            filled += n;
        }
        return filled;
    }
};

// Reading one frame, shared by recv_bytes, recv_bytes_into and recv<T>.
struct ConnectionAccess {
    // The connection's descriptor as a framed channel (borrowed: the Connection owns it).
    static transport::FramedChannel channel(const Connection& c) noexcept {
        return transport::FramedChannel::borrowing(c.fd_, c.is_socket_, c.max_message_size_);
    }

    // Reads a frame header and returns the payload length; throws EOFError at a clean end and
    // ProtocolError (after closing) for a malformed or over-limit header.
    static std::uint64_t read_length(Connection& c, FrameSource& source, std::optional<std::size_t> maxlength) {
        std::byte word[kShortHeaderSize];
        const std::size_t got = source.read_full(word);
        if (got == 0) throw EOFError("end of file: the other end of the connection is closed");
        if (got < kShortHeaderSize) fail(c, "got end of file during message (in the length prefix)");
        std::uint64_t length = 0;
        const transport::FirstWord first = transport::decode_first_word(std::span<const std::byte, 4>(word, 4));
        if (const auto* n = std::get_if<transport::NegativeLength>(&first)) {
            fail(c, fmt::format("invalid message length {} (the only negative length is -1, which announces "
                                "an 8-byte length)",
                                n->value));
        } else if (std::holds_alternative<transport::LongFormFollows>(first)) {
            std::byte wide[kLongLengthSize];
            if (source.read_full(wide) < kLongLengthSize) fail(c, "got end of file during message (in the 8-byte length)");
            length = transport::decode_long_length(std::span<const std::byte, 8>(wide, 8));
        } else {
            length = std::get<transport::ShortLength>(first).length;
        }
        if (length > kMaxFrameLength || length > c.max_message_size_)
            fail(c, fmt::format("message of {} bytes announced, over the maximum message size of {} bytes", length,
                                c.max_message_size_));
        if (maxlength && length > *maxlength)
            fail(c, fmt::format("bad message length: {} bytes announced, maxlength is {}", length, *maxlength));
        return length;
    }

    // Reads `length` payload bytes into `buffer` (which may be larger than needed, but is grown
    // only as bytes arrive) and returns them.
    static std::span<std::byte> read_payload(Connection& c, FrameSource& source, std::vector<std::byte>& buffer,
                                             std::uint64_t length) {
        const auto total = static_cast<std::size_t>(length);
        if (buffer.size() < std::min(total, kEagerAllocation)) buffer.resize(std::min(total, kEagerAllocation));
        std::size_t filled = 0;
        while (filled < total) {
            if (filled == buffer.size()) buffer.resize(std::min(total, std::max(buffer.size() * 2, kEagerAllocation)));
            const std::size_t want = std::min(total, buffer.size()) - filled;
            const std::size_t n = source.read_some(std::span(buffer.data() + filled, want));
            if (n == 0) fail(c, fmt::format("got end of file during message ({} of {} bytes)", filled, total));
            filled += n;
        }
        return {buffer.data(), total};
    }

    [[noreturn]] static void fail(Connection& c, const std::string& why) {
        c.close();
        throw ProtocolError(why);
    }
};

Connection::Connection(int fd, bool readable, bool writable)
    : fd_(fd), readable_(readable), writable_(writable), is_socket_(transport::is_socket(fd)) {}

Connection Connection::from_fd(int fd, bool readable, bool writable) {
    if (fd < 0) throw UsageError("invalid file descriptor " + std::to_string(fd));
    if (!readable && !writable) throw UsageError("at least one of `readable` or `writable` must be True");
    return Connection(fd, readable, writable);
}

Connection::Connection(Connection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      readable_(std::exchange(other.readable_, false)),
      writable_(std::exchange(other.writable_, false)),
      is_socket_(other.is_socket_),
      max_message_size_(other.max_message_size_),
      send_scratch_(std::move(other.send_scratch_)),
      recv_scratch_(std::move(other.recv_scratch_)) {}

Connection& Connection::operator=(Connection&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        readable_ = std::exchange(other.readable_, false);
        writable_ = std::exchange(other.writable_, false);
        is_socket_ = other.is_socket_;
        max_message_size_ = other.max_message_size_;
        send_scratch_ = std::move(other.send_scratch_);
        recv_scratch_ = std::move(other.recv_scratch_);
    }
    return *this;
}

Connection::Connection(const Connection& other)
    : readable_(other.readable_),
      writable_(other.writable_),
      is_socket_(other.is_socket_),
      max_message_size_(other.max_message_size_) {
    if (other.fd_ >= 0) {
        fd_ = ::fcntl(other.fd_, F_DUPFD_CLOEXEC, 0);
        if (fd_ < 0) throw OSError("duplicating the descriptor of a Connection", errno);
    }
}

Connection& Connection::operator=(const Connection& other) {
    if (this != &other) *this = Connection(other);
    return *this;
}

Connection::~Connection() { close(); }

void Connection::close() noexcept {
    // An int, not a UniqueFd: the public header keeps the descriptor as its API shows it.
    transport::close_fd(std::exchange(fd_, -1));
    // Python keeps readable/writable after close; the checks look at closed() first.
}

int Connection::fileno() const {
    check_open();
    return fd_;
}

int Connection::detach() {
    check_open();
    return std::exchange(fd_, -1);
}

void Connection::set_max_message_size(std::size_t bytes) {
    if (bytes == 0) throw UsageError("max_message_size must be positive");
    max_message_size_ = bytes;
}

void Connection::check_open() const {
    if (fd_ < 0) throw OSError("handle is closed");
}

void Connection::check_readable() const {
    check_open();
    if (!readable_) throw OSError("connection is write-only");
}

void Connection::check_writable() const {
    check_open();
    if (!writable_) throw OSError("connection is read-only");
}

void Connection::send_frame(std::span<const std::byte> payload) {
    std::size_t written = 0;
    try {
        ConnectionAccess::channel(*this).send(payload, detail::Deadline::never(), written);
    } catch (const OSError&) {
        // Half a frame on the wire: whatever the peer reads next is out of step.
        if (written > 0) close();
        throw;
    }
}

void Connection::send_framed_scratch() {
    static_assert(kFrameLengthSize == transport::kShortHeaderSize);
    std::size_t written = 0;
    try {
        ConnectionAccess::channel(*this).send_prefixed(send_scratch_, detail::Deadline::never(), written);
    } catch (const OSError&) {
        if (written > 0) close();
        throw;
    }
}

void Connection::send_bytes(std::span<const std::byte> data, std::size_t offset, std::optional<std::size_t> size) {
    check_writable();
    if (offset > data.size()) throw UsageError("buffer length < offset");
    const std::size_t count = size.value_or(data.size() - offset);
    if (count > data.size() - offset) throw UsageError("buffer length < offset + size");
    send_frame(data.subspan(offset, count));
}

std::vector<std::byte> Connection::recv_bytes(std::optional<std::size_t> maxlength) {
    check_readable();
    FrameSource source{ConnectionAccess::channel(*this), {}};
    const std::uint64_t length = ConnectionAccess::read_length(*this, source, maxlength);
    std::vector<std::byte> message;
    ConnectionAccess::read_payload(*this, source, message, length);
    return message;
}

std::size_t Connection::recv_bytes_into(std::span<std::byte> buffer, std::size_t offset) {
    check_readable();
    if (offset > buffer.size()) throw UsageError("offset too large");
    FrameSource source{ConnectionAccess::channel(*this), {}};
    const std::uint64_t length = ConnectionAccess::read_length(*this, source, std::nullopt);
    const std::size_t room = buffer.size() - offset;
    if (length > room) {
        std::vector<std::byte> whole;
        ConnectionAccess::read_payload(*this, source, whole, length);
        throw BufferTooShort(std::move(whole));
    }
    const auto size = static_cast<std::size_t>(length);
    const std::size_t got = source.read_full(buffer.subspan(offset, size));
    if (got < size) ConnectionAccess::fail(*this, fmt::format("got end of file during message ({} of {} bytes)", got, size));
    return size;
}

std::span<const std::byte> Connection::recv_frame_into_scratch(std::size_t expected_size) {
    check_readable();
    FrameSource source{ConnectionAccess::channel(*this), {}};
    std::byte ahead[kFrameLengthSize + kMaxFixedReadAhead];
    if (expected_size > 0) {
        const std::size_t n = source.read_some(std::span(ahead, kFrameLengthSize + expected_size));
        if (n == 0) throw EOFError("end of file: the other end of the connection is closed");
        source.ahead = std::span(ahead, n);
    }
    const std::uint64_t length = ConnectionAccess::read_length(*this, source, std::nullopt);
    const std::span<const std::byte> payload = ConnectionAccess::read_payload(*this, source, recv_scratch_, length);
    if (!source.ahead.empty()) {
        // Read past a frame shorter than the value asked for: the bytes belong to the next
        // message, and this one cannot decode anyway.
        close();
        throw DecodeError(fmt::format("message of {} bytes cannot be a value of {} bytes", length, expected_size));
    }
    return payload;
}

void Connection::trim_scratch(std::vector<std::byte>& scratch) noexcept {
    if (scratch.capacity() > kScratchKeep) std::vector<std::byte>().swap(scratch);
}

bool Connection::poll_for(std::optional<std::chrono::nanoseconds> timeout) {
    check_readable();
    return transport::wait_fd(fd_, POLLIN, detail::Deadline::from(timeout)) == transport::Readiness::ready;
}

std::pair<Connection, Connection> Pipe(bool duplex) {
    int fds[2];
    if (duplex) {
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) throw OSError("socketpair", errno);
        return {Connection::from_fd(fds[0], true, true), Connection::from_fd(fds[1], true, true)};
    }
    if (::pipe2(fds, O_CLOEXEC) < 0) throw OSError("pipe2", errno);
    return {Connection::from_fd(fds[0], true, false), Connection::from_fd(fds[1], false, true)};
}

namespace connection::detail {

std::vector<std::size_t> wait_ready(std::span<const int> fds, std::optional<std::chrono::nanoseconds> timeout) {
    if (fds.empty() && !timeout)
        throw UsageError("wait() on no objects without a timeout would never return");
    std::vector<pollfd> watched(fds.size());
    for (std::size_t i = 0; i < fds.size(); ++i) {
        if (fds[i] < 0) throw UsageError("wait(): invalid file descriptor " + std::to_string(fds[i]));
        watched[i] = pollfd{fds[i], POLLIN, 0};
    }
    const auto deadline = mproc::detail::Deadline::from(timeout);
    for (;;) {
        const auto left = deadline.remaining();
        timespec ts{};
        if (left) {
            const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(*left);
            ts = timespec{static_cast<time_t>(seconds.count()), static_cast<long>((*left - seconds).count())};
        }
        const int n = ::ppoll(watched.data(), watched.size(), left ? &ts : nullptr, nullptr);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw OSError("wait", errno);
        }
        if (n == 0) {
            if (left && left->count() == 0) return {};
            continue;
        }
        std::vector<std::size_t> ready;
        for (std::size_t i = 0; i < watched.size(); ++i) {
            if (watched[i].revents & POLLNVAL) throw OSError("wait: descriptor " + std::to_string(fds[i]), EBADF);
            if (watched[i].revents != 0) ready.push_back(i);
        }
        return ready;
    }
}

}  // namespace connection::detail

}  // namespace mproc
