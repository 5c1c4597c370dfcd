#pragma once
// The manager's messages on an authenticated connection's descriptor: Python's frames (a 4-byte
// big-endian signed length, or -1 and an 8-byte length), written and read by transport's
// FramedChannel (transport/framed_channel.hpp), whose reads are buffered.
//
// Why not Connection::recv_bytes: it reads a frame's length and its payload with two system calls
// so that it never reads past the frame. A manager's conversation is strictly request and reply,
// so a reader that buffers sees at most the one frame it waits for (a client that sends more
// than one request at a time has its requests kept in order, not lost): one read(2) per message,
// the least a round trip to another process costs, which is what manager.dict.op measures.
#include <cstddef>
#include <span>
#include <vector>

#include "base/spin.hpp"
#include "transport/framed_channel.hpp"

namespace mproc::detail {

// Room for the length at the front of a frame being built.
inline constexpr std::size_t kFrameHeader = transport::kShortHeaderSize;

// Writes `frame`, whose first kFrameHeader bytes are room for the length, as one frame.
// OSError (EPIPE when the peer is gone); never SIGPIPE.
void send_frame(int fd, std::vector<std::byte>& frame);

// Reads frames, spinning a little before it sleeps while that pays: not when the CPUs are
// oversubscribed (wire.cpp: kBusyYield).
class FrameReader {
public:
    // The next frame's payload, valid until the next call. EOFError when the peer closed at a
    // frame boundary; ProtocolError for a frame cut short, a negative length or one over
    // `max_size`; OSError when the read fails. A reader reads one descriptor (the first given).
    std::span<const std::byte> next(int fd, std::size_t max_size);

private:
    // Looks for bytes without sleeping for a while; true when some arrived.
    bool spin_read();
    transport::FramedChannel channel_;
    SpinBudget spin_;
    unsigned backoff_ = 0;  // waits to sleep through after a spin that found the CPUs busy
    unsigned quiet_ = 0;    // of which this many are left
};

}  // namespace mproc::detail
