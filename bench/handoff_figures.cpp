// Figures for large messages handed over without a copy (SharedBuffer through a Queue), against
// copying the same bytes once in memory (memcpy).
//
// queue.handoff.64mib, in MB/s of 64 MiB buffers (10^6 bytes per MB):
//   mproc  A receiver process, started before the timed part, gets SharedBuffers from a
//          Queue<SharedBuffer>. For each iteration the sender creates a 64 MiB buffer and fills
//          it (memset, and the iteration's number in its first, middle and last 8-byte words),
//          outside the time; the time runs from just before put() until the sender has the
//          receiver's reply: the receiver got the buffer, checked those three words and one byte
//          1 MiB in, and put a small reply on a second queue. So each iteration counts the
//          handover (marking it in transit and unmapping it in the sender, opening and mapping
//          it in the receiver, the page faults of the words read) plus one small message back and
//          the wake-ups of both; the receiver drops the buffer after replying (outside the time).
//   raw    memcpy of 64 MiB from a filled buffer into another one, both touched beforehand, in
//          this process: what sending the bytes themselves would cost at the very least (a pipe or
//          a queue copies them twice).
// Eight iterations per batch: creating and filling 64 MiB outside the time takes far longer
// than the handover itself, so the harness's calibration, which counts only the timed part,
// would pick batches that run for minutes.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "harness.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_buffer.hpp"

namespace {

constexpr std::size_t kBufferSize = std::size_t{64} << 20;
constexpr std::size_t kProbeOffset = std::size_t{1} << 20;

std::uint64_t word_at(const std::byte* bytes, std::size_t offset) {
    std::uint64_t value = 0;
    std::memcpy(&value, bytes + offset, sizeof value);
    return value;
}

void put_word(std::byte* bytes, std::size_t offset, std::uint64_t value) { std::memcpy(bytes + offset, &value, sizeof value); }

constexpr std::size_t kWordOffsets[] = {0, kBufferSize / 2, kBufferSize - 8};

void fill_for(const mproc::SharedBuffer& buffer, std::uint64_t iteration) {
    std::memset(buffer.data(), static_cast<int>(iteration & 0xff), buffer.size());
    for (const std::size_t offset : kWordOffsets) put_word(buffer.data(), offset, iteration);
}

bool looks_filled_for(const mproc::SharedBuffer& buffer, std::uint64_t iteration) {
    if (buffer.size() != kBufferSize) return false;
    for (const std::size_t offset : kWordOffsets)
        if (word_at(buffer.data(), offset) != iteration) return false;
    return buffer.data()[kProbeOffset] == static_cast<std::byte>(iteration & 0xff);
}

bench::Seconds handoff_mproc(std::size_t n) {
    mproc::Queue<mproc::SharedBuffer> buffers;
    mproc::Queue<std::uint64_t> replies;
    auto receiver = mproc::fork_context.Process([buffers, replies, n]() mutable {
        for (std::size_t i = 0; i < n; ++i) {
            const mproc::SharedBuffer buffer = buffers.get();
            replies.put(looks_filled_for(buffer, i) ? i : ~std::uint64_t{0});
        }
    });
    receiver.start();
    bench::Seconds took{0};
    for (std::size_t i = 0; i < n; ++i) {
        mproc::SharedBuffer buffer(kBufferSize);
        fill_for(buffer, i);
        const auto start = std::chrono::steady_clock::now();
        buffers.put(buffer);
        const std::uint64_t reply = replies.get();
        took += std::chrono::steady_clock::now() - start;
        bench::require(reply == i, "the receiver did not find the buffer's words");
    }
    receiver.join();
    bench::require(receiver.exitcode() == 0, "the receiver failed");
    return took;
}

bench::Seconds copy_raw(std::size_t n) {
    std::vector<std::byte> source(kBufferSize, std::byte{1});
    std::vector<std::byte> target(kBufferSize, std::byte{0});  // touched: no page faults in the time
    return bench::time_loop(n, [&] {
        std::memcpy(target.data(), source.data(), kBufferSize);
        bench::keep(target[kProbeOffset]);
    });
}

const bench::Register queue_handoff_64mib{{
    .name = "queue.handoff.64mib",
    .unit = bench::megabytes_per_second(double(kBufferSize)),
    .description = "64 MiB SharedBuffer through a Queue to another process, which reads a few words; raw: memcpy",
    .impls = {{"mproc", handoff_mproc}, {"raw", copy_raw}},
    .fixed_iterations = 8,
}};

}  // namespace
