#pragma once
// WorkerLink: the pool's channel to one worker process, and the worker's to the pool.
//
// Tasks and results travel through two single-producer, single-consumer byte rings in one block of
// shared memory (to the worker: the pool's dispatcher writes, the worker reads; to the pool: the
// reverse). A socketpair beside them carries no data, only doorbells and ends:
//  - a doorbell is one byte, sent by a side that published bytes (or freed room) while the other
//    side had said it was going to sleep; so a side that keeps up with the other never makes a
//    system call, and a side that sleeps waits in the kernel (poll) like on any descriptor;
//  - end of file on the socket means the other process has gone, as before the rings: a worker
//    whose pool died leaves, and the pool watches the worker's sentinel besides.
// Why a socket rather than a futex for the sleeping side: the pool's dispatcher waits for results,
// worker deaths (sentinels) and new tasks at once, and only poll() waits on all of those; the
// worker's poll() sees its pool's death in the same call.
//
// Frames on a ring: a u64 length (native order: both ends are on this machine), then the payload.
// A frame larger than what the ring has free goes in parts as the reader makes room, so the size
// of a frame is limited by memory only.
//
// Memory ordering. The writer copies bytes into the ring, then stores the tail (release); the
// reader loads the tail (acquire), copies, then stores the head (release), which the writer loads
// (acquire) before reusing that room. The sleep handshake is Dekker's: the sleeper stores its
// flag, fences (seq_cst) and looks at the ring again; the writer stores the tail, fences (seq_cst)
// and looks at the flag. At least one of them sees the other's store, so a publication is never
// missed by a sleeper. A doorbell may arrive after its sleeper woke by itself; it is then drained
// on the next wait, which costs one spurious wake-up.
//
// A process killed mid-write leaves its last frame unpublished or incomplete; the pool reads what
// was published before the death (results the worker finished) and discards a partial frame.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/spin.hpp"
#include "mproc/detail/shared_block.hpp"

namespace mproc::detail {

// The shared words of a worker's progress: the id of the task it is running (0 between tasks) and
// when it began it (CLOCK_MONOTONIC, the same clock in every process: task_timeout counts from
// there, so a worker's own start-up does not count against its first task).
struct alignas(64) ProgressWord {
    std::atomic<std::uint64_t> task{0};
    std::atomic<std::int64_t> started_ns{0};
};

// One ring's control words; each on a line of its own, so that the writer publishing and the
// reader taking do not slow each other down more than the hand-off itself.
struct LinkRing {
    alignas(64) std::atomic<std::uint64_t> tail{0};  // bytes ever published by the writer
    alignas(64) std::atomic<std::uint64_t> head{0};  // bytes ever taken by the reader
    alignas(64) std::atomic<std::uint32_t> reader_asleep{0};  // the reader waits for bytes
    std::atomic<std::uint32_t> writer_asleep{0};              // the writer waits for room
};

// The block: progress, the two rings' words, then each ring's bytes.
struct LinkShared {
    ProgressWord progress;
    LinkRing to_worker;
    LinkRing to_pool;
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::int64_t>::is_always_lock_free &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "the link's words must work across processes");

// The pool's one word for a thread that waits for a result and collects answers itself
// (detail::WaitHelper): it sleeps on `seq` (a futex) after raising `asleep`; a worker that
// publishes answers and finds `asleep` raised lowers it, bumps `seq` and wakes it.
struct WaiterWord {
    alignas(64) std::atomic<std::uint32_t> seq{0};
    std::atomic<std::uint32_t> asleep{0};

    // For a side that has just published (and fenced): wakes the waiter if it said it sleeps.
    void wake_if_asleep() noexcept;
};

// For a side that has just published (and fenced): true when the other side had raised `flag`
// (it sleeps, or is about to) and this call lowered it, so that this side, and only it, wakes it.
inline bool claim_sleeper(std::atomic<std::uint32_t>& flag) noexcept {
    return flag.load(std::memory_order_relaxed) != 0 && flag.exchange(0, std::memory_order_relaxed) != 0;
}

// Bytes of each ring: room for a few hundred batched tasks or results.
inline constexpr std::size_t kLinkRingBytes = std::size_t{256} << 10;

// A new zero-filled block for one worker's link.
SharedBlock allocate_link_block();
// DecodeError unless `block` is a link block of the expected size.
void check_link_block(const SharedBlock& block);

// One end of a link: the ring it writes, the ring it reads, and its end of the socket.
class WorkerLink {
public:
    enum class Side { pool, worker };

    WorkerLink() = default;
    WorkerLink(const SharedBlock& block, Side side, int socket_fd) noexcept;

    ProgressWord& progress() const noexcept { return shared_->progress; }
    // The worker's side: the pool's waiter word, woken with every publication it finds asleep.
    void set_waiter(WaiterWord* waiter) noexcept { waiter_ = waiter; }
    int fd() const noexcept { return fd_; }

    // --- Writing: frames are built in a local buffer, then flushed into the ring.
    std::size_t begin_frame();
    std::vector<std::byte>& output() noexcept { return out_; }
    void end_frame(std::size_t mark) noexcept;
    void discard_frame(std::size_t mark) { out_.resize(mark); }
    bool output_pending() const noexcept { return sent_ < out_.size(); }
    // Copies as much of the output as the ring has room for and publishes it; true when all of it
    // went. Rings the doorbell when the reader sleeps.
    bool flush();
    // Whether the ring has room for more of the pending output.
    bool has_room() const noexcept;

    // --- Reading.
    // Whether the other side published bytes not yet taken (one load; no copy).
    bool has_incoming() const noexcept;
    // Takes every published byte into the input buffer; false when there was none. Rings the
    // doorbell when the writer waits for room.
    bool take_incoming();
    // The next complete frame in the input buffer, or nullopt. Valid until the next take_incoming().
    std::optional<std::span<const std::byte>> next_frame();
    // Puts back the frame next_frame() just returned, for a later next_frame().
    void unread_frame(std::span<const std::byte> frame) noexcept;
    // Whether the input buffer holds a complete frame.
    bool frame_ready() const noexcept;
    // Whether the input buffer and the ring hold no byte.
    bool input_empty() const noexcept { return begin_ == end_ && !has_incoming(); }

    // --- Sleeping. A side about to sleep raises its flags (arm), fences, and looks once more at
    // what it waits for; then it polls its socket. Woken, it drains the doorbells and lowers the
    // flags (disarm). Returns false from drain_doorbells when the other side has gone.
    void arm(bool for_input, bool for_room) noexcept;
    void disarm() noexcept;
    // Lowers only the reader's flag: another thread of the pool reads in its place for a while.
    void lower_reader_flag() noexcept;
    bool drain_doorbells() noexcept;

    // The worker's blocking wait: until there is input (for_input) or room for the pending output
    // (for_room), spinning briefly first. False when the pool has gone.
    bool wait(bool for_input, bool for_room);

private:
    void ring_doorbell() const noexcept;
    // The length of the complete frame at the front of the input buffer, or nullopt.
    std::optional<std::uint64_t> ready_frame_length() const noexcept;
    bool ready(bool for_input, bool for_room) const noexcept {
        return (for_input && has_incoming()) || (for_room && has_room());
    }

    LinkShared* shared_ = nullptr;
    LinkRing* writes_ = nullptr;
    LinkRing* reads_ = nullptr;
    std::byte* write_bytes_ = nullptr;
    std::byte* read_bytes_ = nullptr;
    int fd_ = -1;
    WaiterWord* waiter_ = nullptr;
    std::vector<std::byte> out_;
    std::size_t sent_ = 0;
    std::vector<std::byte> in_;  // bytes [begin_, end_) taken from the ring, not yet framed out
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
    SpinBudget spin_;
};

}  // namespace mproc::detail
