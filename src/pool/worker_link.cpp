// The rings and doorbells of a pool worker's link (worker_link.hpp).
#include "pool/worker_link.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/futex.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

namespace {

constexpr std::size_t kHeaderBytes = sizeof(std::uint64_t);
constexpr std::size_t kRingsOffset = (sizeof(LinkShared) + 63) / 64 * 64;
constexpr std::size_t kBlockBytes = kRingsOffset + 2 * kLinkRingBytes;
static_assert((kLinkRingBytes & (kLinkRingBytes - 1)) == 0, "ring offsets wrap with a mask");

// Copies `n` bytes into the ring at position `at`, wrapping at its end.
void copy_in(std::byte* ring, std::uint64_t at, const std::byte* from, std::size_t n) noexcept {
    const std::size_t offset = at & (kLinkRingBytes - 1);
    const std::size_t first = std::min(n, kLinkRingBytes - offset);
    std::memcpy(ring + offset, from, first);
    if (n > first) std::memcpy(ring, from + first, n - first);
}

void copy_out(const std::byte* ring, std::uint64_t at, std::byte* to, std::size_t n) noexcept {
    const std::size_t offset = at & (kLinkRingBytes - 1);
    const std::size_t first = std::min(n, kLinkRingBytes - offset);
    std::memcpy(to, ring + offset, first);
    if (n > first) std::memcpy(to + first, ring, n - first);
}

}  // namespace

SharedBlock allocate_link_block() {
    SharedBlock block = allocate_shared_block(BlockKind::pool_link, kBlockBytes, 64);
    new (block.payload()) LinkShared{};
    return block;
}

void check_link_block(const SharedBlock& block) {
    if (shared_block_size(block) != kBlockBytes) throw DecodeError("pool: a worker's link block has the wrong size");
}

WorkerLink::WorkerLink(const SharedBlock& block, Side side, int socket_fd) noexcept
    : shared_(block.as<LinkShared>()), fd_(socket_fd) {
    std::byte* rings = block.payload() + kRingsOffset;
    std::byte* to_worker = rings;
    std::byte* to_pool = rings + kLinkRingBytes;
    if (side == Side::pool) {
        writes_ = &shared_->to_worker;
        reads_ = &shared_->to_pool;
        write_bytes_ = to_worker;
        read_bytes_ = to_pool;
    } else {
        writes_ = &shared_->to_pool;
        reads_ = &shared_->to_worker;
        write_bytes_ = to_pool;
        read_bytes_ = to_worker;
    }
}

std::size_t WorkerLink::begin_frame() {
    const std::size_t mark = out_.size();
    out_.resize(mark + kHeaderBytes);
    return mark;
}

void WorkerLink::end_frame(std::size_t mark) noexcept {
    const std::uint64_t length = out_.size() - mark - kHeaderBytes;
    std::memcpy(out_.data() + mark, &length, sizeof length);
}

bool WorkerLink::has_room() const noexcept {
    const std::uint64_t tail = writes_->tail.load(std::memory_order_relaxed);
    return tail - writes_->head.load(std::memory_order_acquire) < kLinkRingBytes;
}

bool WorkerLink::flush() {
    if (!output_pending()) return true;
    const std::uint64_t tail = writes_->tail.load(std::memory_order_relaxed);
    const std::uint64_t room = kLinkRingBytes - (tail - writes_->head.load(std::memory_order_acquire));
    const std::size_t n = std::min<std::size_t>(room, out_.size() - sent_);
    if (n > 0) {
        copy_in(write_bytes_, tail, out_.data() + sent_, n);
        writes_->tail.store(tail + n, std::memory_order_release);
        sent_ += n;
        std::atomic_thread_fence(std::memory_order_seq_cst);  // the tail before the reader's flag
        if (claim_sleeper(writes_->reader_asleep)) ring_doorbell();
        if (waiter_ != nullptr) waiter_->wake_if_asleep();
    }
    if (sent_ < out_.size()) return false;
    out_.clear();
    sent_ = 0;
    return true;
}

bool WorkerLink::has_incoming() const noexcept {
    return reads_->tail.load(std::memory_order_acquire) != reads_->head.load(std::memory_order_relaxed);
}

bool WorkerLink::take_incoming() {
    const std::uint64_t head = reads_->head.load(std::memory_order_relaxed);
    const std::uint64_t tail = reads_->tail.load(std::memory_order_acquire);
    if (tail == head) return false;
    const std::size_t n = tail - head;
    if (begin_ == end_) {
        begin_ = end_ = 0;
    } else if (begin_ > 0 && end_ + n > in_.size()) {
        std::memmove(in_.data(), in_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    if (end_ + n > in_.size()) in_.resize(std::max(end_ + n, 2 * in_.size()));
    copy_out(read_bytes_, head, in_.data() + end_, n);
    end_ += n;
    reads_->head.store(tail, std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the head before the writer's flag
    if (claim_sleeper(reads_->writer_asleep)) ring_doorbell();
    return true;
}

std::optional<std::uint64_t> WorkerLink::ready_frame_length() const noexcept {
    if (end_ - begin_ < kHeaderBytes) return std::nullopt;
    std::uint64_t length;
    std::memcpy(&length, in_.data() + begin_, sizeof length);
    if (end_ - begin_ - kHeaderBytes < length) return std::nullopt;
    return length;
}

std::optional<std::span<const std::byte>> WorkerLink::next_frame() {
    const auto length = ready_frame_length();
    if (!length) return std::nullopt;
    const std::span<const std::byte> frame(in_.data() + begin_ + kHeaderBytes, *length);
    begin_ += kHeaderBytes + *length;
    return frame;
}

void WorkerLink::unread_frame(std::span<const std::byte> frame) noexcept { begin_ -= kHeaderBytes + frame.size(); }

bool WorkerLink::frame_ready() const noexcept { return ready_frame_length().has_value(); }

void WaiterWord::wake_if_asleep() noexcept {
    if (!claim_sleeper(asleep)) return;
    seq.fetch_add(1, std::memory_order_relaxed);
    futex_wake(&seq, 1);
}

void WorkerLink::lower_reader_flag() noexcept { reads_->reader_asleep.store(0, std::memory_order_relaxed); }

void WorkerLink::arm(bool for_input, bool for_room) noexcept {
    if (for_input) reads_->reader_asleep.store(1, std::memory_order_relaxed);
    if (for_room) writes_->writer_asleep.store(1, std::memory_order_relaxed);
}

void WorkerLink::disarm() noexcept {
    reads_->reader_asleep.store(0, std::memory_order_relaxed);
    writes_->writer_asleep.store(0, std::memory_order_relaxed);
}

void WorkerLink::ring_doorbell() const noexcept {
    const char bell = 1;
    // A full socket already holds doorbells the other side has yet to drain: this one may go.
    while (::send(fd_, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

bool WorkerLink::drain_doorbells() noexcept {
    char bells[64];
    for (;;) {
        const ssize_t n = ::recv(fd_, bells, sizeof bells, MSG_DONTWAIT);
        if (n == 0) return false;
        if (n < 0) return errno == EINTR ? true : (errno == EAGAIN || errno == EWOULDBLOCK);
        if (static_cast<std::size_t>(n) < sizeof bells) return true;
    }
}

bool WorkerLink::wait(bool for_input, bool for_room) {
    if (ready(for_input, for_room)) return true;
    if (spin_until(spin_, 1, [&] { return ready(for_input, for_room); })) return true;
    for (;;) {
        arm(for_input, for_room);
        std::atomic_thread_fence(std::memory_order_seq_cst);  // the flags before the ring's words
        if (ready(for_input, for_room)) {
            disarm();
            return true;
        }
        pollfd p{fd_, POLLIN, 0};
        const int rc = ::poll(&p, 1, -1);
        if (rc < 0 && errno != EINTR) throw OSError("poll on a pool worker's link", errno);
        disarm();
        if (rc > 0 && !drain_doorbells()) return ready(for_input, for_room);
        if (ready(for_input, for_room)) return true;
    }
}

}  // namespace mproc::detail
