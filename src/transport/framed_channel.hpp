#pragma once
// FramedChannel: the one framed byte channel over a descriptor. Every message mproc sends between
// processes over a socket or a pipe travels through it: Connection's messages, the manager's
// requests and replies, the pool's tasks and results.
//
// Frames are Python's (frame.hpp): an int32 big-endian length, or -1 and a uint64 big-endian
// length for a payload over 0x7fffffff bytes, then the payload. The channel handles once what
// every user needs: EINTR is retried, EAGAIN is waited out (blocking calls) or reported
// (non-blocking calls), a closed peer is OSError(EPIPE) or Flush::closed and never a SIGPIPE
// (fd_io.hpp), and a frame announcing more than max_message() bytes is a ProtocolError before
// any of it is read.
//
// Two ways to use it:
//  - blocking: send() writes a frame, waiting for room until a deadline; recv() returns the next
//    frame, reading as much as the descriptor has (it may read ahead into the next frame, which
//    stays buffered for the next recv()).
//  - non-blocking: frames are built into an output buffer (begin_frame/end_frame or
//    append_frame) and flush() writes as much as the descriptor takes, saying whether the rest
//    would block; read_available() reads what has arrived into an input buffer and next_frame()
//    takes the complete frames off its front.
// read_some()/read_full() read exactly what is asked and never more, for a reader that must not
// take bytes past its frame (Connection: its descriptor may be shared with other processes).
//
// A deadline bounds every wait of a read, and the waits for room of a write to a non-blocking
// descriptor (a blocking one is written as it takes the bytes).
//
// The channel owns its descriptor (constructed from a UniqueFd) or borrows it (borrowing()); it
// is not thread-safe. A payload returned by recv() or next_frame() stays valid until the next
// read into the channel.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/deadline.hpp"
#include "base/unique_fd.hpp"
#include "transport/frame.hpp"

namespace mproc::transport {

inline constexpr std::size_t kNoMessageLimit = SIZE_MAX;

class FramedChannel {
public:
    enum class Flush { done, would_block, closed };
    enum class Read { data, would_block, end_of_file };

    FramedChannel() noexcept = default;
    // Owns `fd` and closes it when destroyed.
    explicit FramedChannel(detail::UniqueFd fd, std::size_t max_message = kNoMessageLimit);
    // Uses `fd`, which the caller keeps open while the channel uses it. `socket`: whether it is a
    // socket (is_socket(fd)), for callers that already know.
    static FramedChannel borrowing(int fd, std::size_t max_message = kNoMessageLimit);
    static FramedChannel borrowing(int fd, bool socket, std::size_t max_message) noexcept;

    FramedChannel(FramedChannel&&) noexcept = default;
    FramedChannel& operator=(FramedChannel&&) noexcept = default;

    int fd() const noexcept { return fd_; }
    bool is_socket() const noexcept { return socket_; }
    std::size_t max_message() const noexcept { return max_message_; }
    void set_max_message(std::size_t bytes) noexcept { max_message_ = bytes; }

    // --- Sending -------------------------------------------------------------------------------

    // Writes one frame (header and payload gathered), waiting for room until `deadline`
    // (TimeoutError then). OSError when the write fails; `written` counts the bytes that left
    // either way, so that a caller knows whether half a frame is on the wire.
    void send(std::span<const std::byte> payload, const detail::Deadline& deadline, std::size_t& written);
    // The same for a frame built in place: `frame` starts with kShortHeaderSize bytes of room for
    // the length, then the payload (the long form is written from the payload alone).
    void send_prefixed(std::span<std::byte> frame, const detail::Deadline& deadline, std::size_t& written);

    // The output buffer. A frame is built by begin_frame(), appending its payload to output(),
    // then end_frame() with what begin_frame() returned; discard_frame() drops it instead.
    std::size_t begin_frame();
    std::vector<std::byte>& output() noexcept { return out_; }
    void end_frame(std::size_t mark);
    void discard_frame(std::size_t mark) { out_.resize(mark); }
    void append_frame(std::span<const std::byte> payload);
    bool output_pending() const noexcept { return !out_.empty(); }

    // Writes as much of the output buffer as the descriptor takes now: done (all of it),
    // would_block (the rest waits for room: poll for POLLOUT) or closed (the peer has gone or the
    // write failed; the rest stays).
    Flush flush() noexcept;
    // Writes all of the output buffer, waiting for room until `deadline` (TimeoutError then).
    // False when the peer has gone or the write failed.
    bool flush_all(const detail::Deadline& deadline = detail::Deadline::never());

    // --- Receiving -----------------------------------------------------------------------------

    // One read into the input buffer (at least kReadChunk bytes of room): data, would_block (a
    // non-blocking descriptor with nothing to read, or `dont_wait` on a socket with nothing to
    // read) or end_of_file. OSError naming "recv" when the read fails.
    static constexpr std::size_t kReadChunk = std::size_t{1} << 16;
    Read read_available(bool dont_wait = false);
    // The next complete frame in the input buffer, or nullopt. ProtocolError for a negative
    // length other than -1, or one over max_message().
    std::optional<std::span<const std::byte>> next_frame();
    // Whether the input buffer holds no byte (of a complete frame or a partial one).
    bool input_empty() const noexcept { return begin_ == end_; }

    // The next frame, reading until it is complete or `deadline` passes (TimeoutError).
    // EOFError at end of file on a frame boundary; ProtocolError for end of file inside a frame
    // (naming where), or a header that next_frame() refuses.
    std::span<const std::byte> recv(const detail::Deadline& deadline = detail::Deadline::never());

    // Reads at most into.size() bytes, waiting until some arrive or `deadline` passes
    // (TimeoutError): the bytes read (> 0), or 0 at end of file. Never reads more than asked.
    std::size_t read_some(std::span<std::byte> into, const detail::Deadline& deadline = detail::Deadline::never());
    // Fills `into` unless end of file comes first; returns the bytes filled.
    std::size_t read_full(std::span<std::byte> into, const detail::Deadline& deadline = detail::Deadline::never());

private:
    FramedChannel(int fd, bool socket, std::size_t max_message) noexcept
        : fd_(fd), socket_(socket), max_message_(max_message) {}
    void wait(short events, const detail::Deadline& deadline) const;

    detail::UniqueFd owned_;
    int fd_ = -1;
    bool socket_ = false;
    std::size_t max_message_ = kNoMessageLimit;
    std::vector<std::byte> out_;
    std::size_t sent_ = 0;
    std::vector<std::byte> in_;
    std::size_t begin_ = 0;  // the first byte not yet taken by next_frame()
    std::size_t end_ = 0;    // one past the last byte read
};

}  // namespace mproc::transport
