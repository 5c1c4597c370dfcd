// Figures for large messages handed over without a copy (SharedBuffer through a Queue), against
// copying the same bytes once in memory (memcpy).
//
// queue.handoff.64mib, in MB/s of 64 MiB buffers (10^6 bytes per MB):
//   mproc  A forked child creates n SharedBuffers of 64 MiB and fills them (memset, and the
//          buffer's number in its first, middle and last 8-byte words), then waits at a start
//          line; none of that is timed. The time runs from opening the start line until the
//          parent has got all n from a Queue<SharedBuffer> and, for each, checked those three
//          words and one byte 1 MiB in. So it counts, per buffer, the handover in the child
//          (the header's lock, unmapping its 64 MiB), the queue's message and wake-ups, and the
//          takeover in the parent (open, mmap, the page faults of the four reads). The parent keeps
//          the buffers until the time has stopped, then drops them: as the raw copy does not
//          count allocating or freeing its memory, the handover does not count creating (zero-
//          filling) or freeing a buffer.
//   raw    memcpy of 64 MiB from a filled buffer into another one, both touched beforehand, in
//          this process: what sending the bytes themselves would cost at the very least (a pipe or
//          a queue copies them twice).
// Eight buffers per batch (512 MiB of /dev/shm at once): creating and filling them outside the
// time takes far longer than handing them over, so the harness's calibration, which counts only
// the timed part, would pick batches that run for minutes.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "harness.hpp"
#include "ipc_helpers.hpp"
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

void put_word(std::byte* bytes, std::size_t offset, std::uint64_t value) {
    std::memcpy(bytes + offset, &value, sizeof value);
}

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
    bench::ipc::SharedObject<bench::ipc::FinishLine> filled;
    bench::ipc::SharedObject<bench::ipc::Gate> gate;
    auto sender = mproc::fork_context.Process([buffers, n, &filled, &gate]() mutable {
        std::vector<mproc::SharedBuffer> ready;
        for (std::size_t i = 0; i < n; ++i) {
            ready.emplace_back(kBufferSize);
            fill_for(ready.back(), i);
        }
        filled->cross();
        gate->wait();
        for (const auto& buffer : ready) buffers.put(buffer);
    });
    sender.start();
    filled->wait_for(1);
    std::vector<mproc::SharedBuffer> received;
    received.reserve(n);
    bool all_filled = true;
    const auto start = std::chrono::steady_clock::now();
    gate->release();
    for (std::size_t i = 0; i < n; ++i) {
        received.push_back(buffers.get());
        all_filled = looks_filled_for(received.back(), i) && all_filled;
    }
    const bench::Seconds took = std::chrono::steady_clock::now() - start;
    received.clear();
    sender.join();
    bench::require(sender.exitcode() == 0, "the sender failed");
    bench::require(all_filled, "a received buffer does not hold the sender's words");
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
    .description = "64 MiB SharedBuffers, filled, through a Queue to another process, which reads a few words of "
                   "each; raw: memcpy",
    .impls = {{"mproc", handoff_mproc}, {"raw", copy_raw}},
    .fixed_iterations = 8,
}};

}  // namespace
