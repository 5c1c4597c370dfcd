#include "transport/framed_channel.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "mproc/errors.hpp"
#include "transport/fd_io.hpp"

namespace mproc::transport {

namespace {

// An input buffer that grew past this for one large message shrinks back to kReadChunk once it is
// empty. Below it the buffer keeps its size: a stream of frames of some hundred kilobytes (a
// pool's chunks) must not allocate and zero-fill a fresh buffer for every frame.
constexpr std::size_t kShrinkAbove = std::size_t{16} << 20;
// A read is given at least this much room; the buffer is compacted (or grown) to make it.
constexpr std::size_t kMinRoom = 4096;

}  // namespace

FramedChannel::FramedChannel(detail::UniqueFd fd, std::size_t max_message)
    : owned_(std::move(fd)), max_message_(max_message) {
    fd_ = owned_.get();
    socket_ = transport::is_socket(fd_);
}

FramedChannel FramedChannel::borrowing(int fd, std::size_t max_message) {
    return FramedChannel(fd, transport::is_socket(fd), max_message);
}

FramedChannel FramedChannel::borrowing(int fd, bool socket, std::size_t max_message) noexcept {
    return FramedChannel(fd, socket, max_message);
}

void FramedChannel::wait(short events, const detail::Deadline& deadline) const {
    if (wait_fd(fd_, events, deadline) == Readiness::timed_out)
        throw TimeoutError(events == POLLOUT ? "timed out waiting to send" : "timed out waiting to receive");
}

// --- Sending -----------------------------------------------------------------------------------

void FramedChannel::send(std::span<const std::byte> payload, const detail::Deadline& deadline, std::size_t& written) {
    const FrameHeader header = encode_frame_header(payload.size());
    write_all(fd_, socket_, header.view(), payload, "send", written, deadline);
}

void FramedChannel::send_prefixed(std::span<std::byte> frame, const detail::Deadline& deadline, std::size_t& written) {
    const std::span<const std::byte> payload = frame.subspan(kShortHeaderSize);
    if (payload.size() > kMaxShortLength) {
        send(payload, deadline, written);  // the 12-byte long form
        return;
    }
    const FrameHeader header = encode_frame_header(payload.size());
    std::copy_n(header.bytes.begin(), kShortHeaderSize, frame.begin());
    write_all(fd_, socket_, frame, {}, "send", written, deadline);
}

std::size_t FramedChannel::begin_frame() {
    const std::size_t mark = out_.size();
    out_.resize(mark + kShortHeaderSize);
    return mark;
}

void FramedChannel::end_frame(std::size_t mark) {
    const std::size_t length = out_.size() - mark - kShortHeaderSize;
    const FrameHeader header = encode_frame_header(length);
    if (header.size > kShortHeaderSize)  // the long form: room for the 8-byte length
        out_.insert(out_.begin() + static_cast<std::ptrdiff_t>(mark + kShortHeaderSize), kLongLengthSize, std::byte{0});
    std::copy_n(header.bytes.begin(), header.size, out_.begin() + static_cast<std::ptrdiff_t>(mark));
}

void FramedChannel::append_frame(std::span<const std::byte> payload) {
    const std::size_t mark = begin_frame();
    out_.insert(out_.end(), payload.begin(), payload.end());
    end_frame(mark);
}

FramedChannel::Flush FramedChannel::flush() noexcept {
    while (sent_ < out_.size()) {
        std::ptrdiff_t n;
        try {
            n = write_some(fd_, socket_, std::span(out_).subspan(sent_), {}, "send");
        } catch (const OSError&) {
            return Flush::closed;  // EPIPE, ECONNRESET: the peer's end tells the rest
        }
        if (n == kWouldBlock) return Flush::would_block;
        sent_ += static_cast<std::size_t>(n);
    }
    out_.clear();
    sent_ = 0;
    return Flush::done;
}

bool FramedChannel::flush_all(const detail::Deadline& deadline) {
    for (;;) {
        switch (flush()) {
            case Flush::done:
                return true;
            case Flush::closed:
                return false;
            case Flush::would_block:
                wait(POLLOUT, deadline);
        }
    }
}

// --- Receiving ---------------------------------------------------------------------------------

FramedChannel::Read FramedChannel::read_available(bool dont_wait) {
    if (begin_ == end_) {
        begin_ = end_ = 0;
        if (in_.size() > kShrinkAbove) std::vector<std::byte>(kReadChunk).swap(in_);
    }
    if (in_.size() - end_ < kMinRoom && begin_ > 0) {
        std::memmove(in_.data(), in_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    // Memory grows with the bytes that arrive, not with the length a peer announces.
    if (in_.size() - end_ < kMinRoom) in_.resize(std::max(kReadChunk, in_.size() * 2));
    const std::span<std::byte> room(in_.data() + end_, in_.size() - end_);
    std::ptrdiff_t n;
    if (dont_wait && socket_) {
        for (;;) {
            n = ::recv(fd_, room.data(), room.size(), MSG_DONTWAIT);
            if (n >= 0) break;
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return Read::would_block;
            throw OSError("recv", errno);
        }
    } else {
        n = transport::read_some(fd_, room, "recv");
        if (n == kWouldBlock) return Read::would_block;
    }
    if (n == 0) return Read::end_of_file;
    end_ += static_cast<std::size_t>(n);
    return Read::data;
}

std::optional<std::span<const std::byte>> FramedChannel::next_frame() {
    const std::size_t available = end_ - begin_;
    if (available < kShortHeaderSize) return std::nullopt;
    const std::byte* at = in_.data() + begin_;
    std::size_t header = kShortHeaderSize;
    std::uint64_t length = 0;
    const FirstWord first = decode_first_word(std::span<const std::byte, kShortHeaderSize>(at, kShortHeaderSize));
    if (const auto* negative = std::get_if<NegativeLength>(&first)) {
        throw ProtocolError(fmt::format("bad message length {} (the only negative length is -1, which announces "
                                        "an 8-byte length)",
                                        negative->value));
    } else if (std::holds_alternative<LongFormFollows>(first)) {
        if (available < kMaxHeaderSize) return std::nullopt;
        header = kMaxHeaderSize;
        length = decode_long_length(std::span<const std::byte, kLongLengthSize>(at + kShortHeaderSize, kLongLengthSize));
    } else {
        length = std::get<ShortLength>(first).length;
    }
    if (length > max_message_)
        throw ProtocolError(fmt::format("bad message length {} (the limit is {})", length, max_message_));
    if (available - header < length) return std::nullopt;
    const std::span<const std::byte> payload(at + header, static_cast<std::size_t>(length));
    begin_ += header + static_cast<std::size_t>(length);
    if (begin_ == end_) begin_ = end_ = 0;
    return payload;
}

std::span<const std::byte> FramedChannel::recv(const detail::Deadline& deadline) {
    for (;;) {
        if (auto frame = next_frame()) return *frame;
        // With a deadline, a blocking descriptor must not be read before it is readable.
        if (deadline.finite()) wait(POLLIN, deadline);
        switch (read_available()) {
            case Read::data:
                break;
            case Read::would_block:
                wait(POLLIN, deadline);
                break;
            case Read::end_of_file: {
                const std::size_t left = end_ - begin_;
                if (left == 0) throw EOFError("end of file: the other end of the connection is closed");
                begin_ = end_ = 0;  // the partial frame can never complete
                if (left < kShortHeaderSize) throw ProtocolError("got end of file during message (in the length prefix)");
                throw ProtocolError(fmt::format("got end of file during message ({} bytes of an unfinished frame)", left));
            }
        }
    }
}

std::size_t FramedChannel::read_some(std::span<std::byte> into, const detail::Deadline& deadline) {
    for (;;) {
        if (deadline.finite()) wait(POLLIN, deadline);
        const std::ptrdiff_t n = transport::read_some(fd_, into, "recv");
        if (n != kWouldBlock) return static_cast<std::size_t>(n);
        wait(POLLIN, deadline);
    }
}

std::size_t FramedChannel::read_full(std::span<std::byte> into, const detail::Deadline& deadline) {
    std::size_t filled = 0;
    while (filled < into.size()) {
        const std::size_t n = read_some(into.subspan(filled), deadline);
        if (n == 0) break;
        filled += n;
    }
    return filled;
}

}  // namespace mproc::transport
