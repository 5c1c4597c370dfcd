#include "managers/wire.hpp"

#include <algorithm>
#include <chrono>

#include "mproc/errors.hpp"
#include "base/spin.hpp"

namespace mproc::detail {

namespace {
// Longer than this between two looks of a spin, the spinner was not running: a yield (or the
// scheduler) ran another thread that had real work. The CPUs have more to run than they can (a
// server serving many clients at once, other programs), and spinning on would take the CPU from
// the threads that have work, so the reader sleeps at once instead. A yield that ran the peer for
// a request's worth of work, or nothing at all, returns well before.
constexpr auto kBusyYield = std::chrono::microseconds(20);
constexpr unsigned kMaxBackoff = 32;
}  // namespace

void send_frame(int fd, std::vector<std::byte>& frame) {
    if (frame.size() - kFrameHeader > transport::kMaxShortLength) throw UsageError("manager: a message over 2 GiB");
    std::size_t written = 0;
    transport::FramedChannel::borrowing(fd, true, transport::kNoMessageLimit)
        .send_prefixed(frame, Deadline::never(), written);
}

bool FrameReader::spin_read() {
    // The answer to a request usually comes within microseconds from a process that is running:
    // look for it without sleeping for a while (base/spin.hpp), since waking up on another CPU
    // costs tens of microseconds here; but not while the CPUs are oversubscribed, and not on a
    // descriptor that is not a socket (it cannot be read without waiting).
    if (!channel_.is_socket()) return false;
    const bool spin = quiet_ == 0;
    if (quiet_ > 0) --quiet_;
    if (!spin) return false;
    bool busy = false;
    bool data = false;
    auto last_look = std::chrono::steady_clock::now();
    const bool ended = spin_until(spin_, 1, [&] {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_look > kBusyYield) return busy = true;  // ends the spin
        last_look = now;
        const transport::FramedChannel::Read got = channel_.read_available(true);
        data = got == transport::FramedChannel::Read::data;
        return got != transport::FramedChannel::Read::would_block;
    });
    // After a spin that found the CPUs busy, the next 1, 2, 4, ... 32 waits sleep at once; one
    // that sees its frame arrive ends that.
    if (busy) {
        backoff_ = std::min(kMaxBackoff, backoff_ == 0 ? 1u : backoff_ * 2);
        quiet_ = backoff_;
    } else if (ended) {
        backoff_ = 0;
    }
    return data;
}

std::span<const std::byte> FrameReader::next(int fd, std::size_t max_size) {
    if (channel_.fd() != fd) channel_ = transport::FramedChannel::borrowing(fd, max_size);
    channel_.set_max_message(max_size);
    for (;;) {
        if (auto frame = channel_.next_frame()) return *frame;
        // Nothing found while spinning (or end of file): wait in recv(), which also tells a
        // clean end from a frame cut short.
        if (!spin_read()) return channel_.recv();
    }
}

}  // namespace mproc::detail
