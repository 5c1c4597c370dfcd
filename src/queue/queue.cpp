// Queue, SimpleQueue and JoinableQueue (include/mproc/queue.hpp): a ring of records in shared
// memory, written under a robust producers' lock and read under a robust consumers' lock.
//
// The ring. Positions (head, tail) count bytes since the queue was created and never wrap; the
// offset in the ring is the position modulo the capacity (a power of two). A record is a 16-byte
// header (payload length, kind, type tag) and its payload, padded to 16 bytes so that a header
// never straddles the end of the ring. A message is one `whole` record, or, when it is larger
// than a quarter of the ring, a `first` record, `middle` ones and a `last` one, written by one
// producer that holds the producers' lock throughout; an `abort` record ends a message in chunks
// that will never be finished.
//
// Publication and its commit points. Producers write a record's bytes first, then publish it by
// storing the tail (release); consumers read the record, then store the head (release). Only those
// two stores make anything visible, so a process killed before them leaves nothing half-visible.
// The message counts (put_count, get_count) change beside the tail and the head, which makes two
// stores; each side writes its "intent" (the tail or head and the count it is about to store)
// before them, and whoever next acquires a lock whose owner died finishes or forgets what the
// dead owner was doing (repair_producers, repair_consumers).
//
// Wake-ups. A consumer that finds the ring empty spins briefly, then sleeps on data_seq after
// raising data_waiting (only the consumer holding get_lock ever waits for data); a producer that
// publishes checks the flag after a full fence, and the one that finds it raised lowers it and
// pays for FUTEX_WAKE, so a consumer is woken once, not once per message published while it wakes
// up. Producers waiting for room say from which head position on they want to be woken
// (space_wanted: a quarter of the ring free, not the next byte), so that a consumer draining a
// full ring wakes them once per quarter rather than once per message. JoinableQueue::join sleeps
// on join_seq.
//
// Process-local state (what waits for the feeder thread of an unbounded Queue) lives in a
// QueueLocal, replaced in a forked child, where the feeder does not exist.
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fmt/format.h>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "mproc/errors.hpp"
#include "mproc/logging.hpp"
#include "mproc/queue.hpp"
#include "base/fork_aware_mutex.hpp"
#include "process/runtime.hpp"
#include "base/asymmetric_fence.hpp"
#include "base/futex.hpp"
#include "base/spin.hpp"
#include "base/mutex_state.hpp"
#include "base/mutex_state_guard.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint64_t kQueueMagic = 0x6d70726f632d7175ULL;  // "mproc-qu"
constexpr std::size_t kRecordHeaderSize = 16;
constexpr std::size_t kMinCapacity = 4096;
constexpr std::size_t kMaxCapacity = std::size_t{1} << 32;  // record lengths fit 32 bits
constexpr int kTypeNames = 8;
constexpr std::size_t kTypeNameSize = 120;
// How long a consumer waiting for the rest of a message in chunks sleeps between looks at
// whether its producer died.
constexpr auto kProducerCheckInterval = std::chrono::milliseconds(100);
// The longest a waiter sleeps at a time when the other processes could not be made to fence
// (asymmetric_fence.hpp): a wake-up they miss then costs at most this much.
constexpr auto kUnfencedSleep = std::chrono::milliseconds(1);
// How many buffers of written-out messages a feeder keeps for reuse, and up to what size.
constexpr std::size_t kSpareBuffers = 2;
constexpr std::size_t kSpareBufferBytes = std::size_t{16} << 20;
enum RecordKind : std::uint32_t { kWhole = 1, kFirst = 2, kMiddle = 3, kLast = 4, kAbort = 5 };

struct RecordHeader {
    std::uint32_t length;
    std::uint32_t kind;
    std::uint64_t tag;
};
static_assert(sizeof(RecordHeader) == kRecordHeaderSize);

struct TypeName {
    std::atomic<std::uint64_t> tag;
    char name[kTypeNameSize];
};

struct QueueShared {
    std::uint64_t magic;
    std::uint64_t capacity;
    std::int64_t maxsize;  // <= 0: unbounded
    std::uint32_t kind;
    std::uint32_t reserved;
    std::int64_t room_wait_ns;  // QueueOptions::room_wait
    // Each lock on a line of its own: glibc writes into a robust mutex on every lock and unlock
    // (its robust-list links), and a producer and a consumer sharing that line would slow each
    // other down on every message.
    alignas(64) MutexState put_lock;
    alignas(64) MutexState get_lock;

    // The producers' side, written under put_lock (streaming is also read without it). The tail
    // has a line of its own: a consumer that waits watches it, and each look takes the line from
    // the producer; what producers write for themselves stays out of that line.
    alignas(64) std::atomic<std::uint64_t> tail;
    alignas(64) std::atomic<std::uint64_t> put_count;
    std::atomic<std::uint64_t> intent_tail;
    std::atomic<std::uint64_t> intent_put_count;
    std::uint64_t head_cache;
    std::uint64_t get_count_cache;
    std::atomic<std::uint32_t> streaming;  // a message in chunks is being written

    // The consumers' side, written under get_lock.
    alignas(64) std::atomic<std::uint64_t> head;
    std::atomic<std::uint64_t> get_count;
    std::atomic<std::uint64_t> intent_head;
    std::atomic<std::uint64_t> intent_get_count;
    std::uint64_t tail_cache;
    std::atomic<std::uint32_t> partial;  // a consumer took a message's first chunk, not its last

    alignas(64) std::atomic<std::uint32_t> data_seq;
    std::atomic<std::uint32_t> data_waiting;
    alignas(64) std::atomic<std::uint32_t> space_seq;
    std::atomic<std::uint32_t> space_waiters;
    std::atomic<std::uint64_t> space_wanted;  // the lowest head position a waiting producer needs
    alignas(64) std::atomic<std::int64_t> unfinished;  // JoinableQueue
    std::atomic<std::uint32_t> join_seq;
    std::atomic<std::uint32_t> join_waiters;

    alignas(64) TypeName names[kTypeNames];
};

constexpr std::size_t kRingOffset = (sizeof(QueueShared) + 63) / 64 * 64;

// The robust acquisition every mproc lock uses (base/mutex_state.hpp), for `timeout_ns`: 0 (held),
// ETIMEDOUT, or EOWNERDEAD (held, and consistent again: the caller repairs what the owner left).
int robust_acquire(MutexState& state, std::int64_t timeout_ns) {
    const int rc = raw_mutex_acquire(state, timeout_ns);
    if (rc != 0 && rc != ETIMEDOUT && rc != EOWNERDEAD) throw OSError("acquiring a queue's lock", rc);
    return rc;
}

constexpr std::uint64_t record_size(std::uint64_t payload) noexcept {
    return (kRecordHeaderSize + payload + 15) / 16 * 16;
}

std::size_t capacity_for(std::size_t requested) {
    if (requested > kMaxCapacity)
        throw UsageError(fmt::format("QueueOptions::buffer_size {} is over the limit of {} bytes", requested, kMaxCapacity));
    return std::max(kMinCapacity, std::bit_ceil(requested));
}


}  // namespace

struct PendingMessage {
    std::vector<std::byte> bytes;
    TypeTag tag;
};

// What this process keeps for one queue beyond the shared memory: messages waiting for the feeder.
struct QueueLocal {
    std::mutex mutex;
    std::condition_variable flushed;
    std::deque<PendingMessage> backlog;
    // Buffers of messages the feeder wrote out, given back to put()'s encoding buffer when a
    // message goes to the backlog: a fresh buffer costs a page fault per 4 KiB on every message.
    std::vector<std::vector<std::byte>> spare_buffers;
    bool feeder_running = false;
};

class QueueCore : public std::enable_shared_from_this<QueueCore> {
public:
    QueueCore(SharedBlock block, QueueKind kind)
        : block_(std::move(block)), shared_(block_.as<QueueShared>()), kind_(kind),
          ring_(block_.payload() + kRingOffset), capacity_(shared_->capacity),
          max_record_(shared_->capacity / 4), generation_(fork_generation()),
          local_(std::make_unique<QueueLocal>()) {}

    const SharedBlock& block() const noexcept { return block_; }
    QueueShared& shared() const noexcept { return *shared_; }

    void put(std::vector<std::byte>& bytes, const TypeTag& tag, std::int64_t timeout);
    void get(const TypeTag& tag, QueueSink& decode, std::int64_t timeout);
    void close() { closed_.store(true, std::memory_order_relaxed); }
    bool closed() const noexcept { return closed_.load(std::memory_order_relaxed); }
    void join_thread();
    void cancel_join_thread() { cancel_join_.store(true, std::memory_order_relaxed); }
    bool join_cancelled() const noexcept { return cancel_join_.load(std::memory_order_relaxed); }
    // Waits until this process's messages are all written out (the exit-time flush).
    void flush();
    std::string repr() const { return fmt::format("<Queue object at {}>", static_cast<const void*>(shared_)); }

private:
    // Producers' side; the caller holds put_lock.
    // Takes put_lock within `timeout_ns` (kForever, or >= 0: 0 only tries), repairing the queue
    // after a dead owner: 0 (held) or ETIMEDOUT. Once it is held, the caller hands it to a guard
    // (producers_held) that releases it.
    int lock_producers(std::int64_t timeout_ns);
    int lock_producers(const Deadline& deadline) { return lock_producers(deadline.remaining_ns()); }
    MutexStateGuard producers_held() noexcept { return MutexStateGuard(shared_->put_lock, std::adopt_lock); }
    void repair_producers();
    std::uint64_t free_space(std::uint64_t needed);
    bool count_allows();
    void write_record(std::uint64_t position, RecordKind kind, const TypeTag& tag, const std::byte* payload,
                      std::size_t length) noexcept;
    void publish(std::uint64_t new_tail, bool completes_message) noexcept;
    bool write_now(std::span<const std::byte> bytes, const TypeTag& tag);
    void write_blocking(std::span<const std::byte> bytes, const TypeTag& tag, const Deadline& deadline);
    bool stream(std::span<const std::byte> bytes, const TypeTag& tag, const Deadline& deadline,
                std::optional<std::chrono::nanoseconds> stall);
    void abandon_stream() noexcept;
    bool wait_for_space(const Deadline& deadline, std::uint64_t needed, std::uint64_t want);
    bool put_unbounded(std::vector<std::byte>& bytes, const TypeTag& tag);

    // Consumers' side; the caller holds get_lock.
    void repair_consumers(bool& skipping);
    bool wait_for_data(std::uint64_t head, const Deadline& deadline, bool in_message);
    void consume(std::uint64_t new_head, bool completes_message, bool partial) noexcept;
    void read_payload(std::uint64_t position, std::size_t length, std::byte* out) const noexcept;
    void check_producer_alive();

    void register_type(const TypeTag& tag);
    std::string type_name_of(std::uint64_t tag) const;
    [[noreturn]] void throw_type_mismatch(std::uint64_t got, const TypeTag& wanted) const;

    QueueLocal& local();
    void enqueue_backlog(std::vector<std::byte>& bytes, const TypeTag& tag);
    static void feed(std::shared_ptr<QueueCore> self);
    bool wait_for_feeder(std::chrono::nanoseconds patience);

    SharedBlock block_;
    QueueShared* shared_;
    QueueKind kind_;
    std::byte* ring_;
    std::uint64_t capacity_;
    std::uint64_t max_record_;
    std::atomic<bool> closed_{false};
    std::atomic<bool> cancel_join_{false};
    std::atomic<bool> backlog_in_use_{false};
    std::atomic<std::uint64_t> registered_tag_{0};
    std::uint64_t generation_;
    std::uint64_t exit_flush_generation_ = ~std::uint64_t{0};  // guarded by the registry's mutex
    std::unique_ptr<QueueLocal> local_;
    SpinBudget data_spin_;
    SpinBudget space_spin_;
    bool draining_ = false;  // the last get() found a message without waiting; under get_lock
};

namespace {

// The queues of this process whose feeder ran, for the exit-time flush; and the local states a
// forked child replaced, kept reachable (their mutexes may have been held at fork).
struct QueueRegistry {
    ForkAwareMutex mutex;
    std::vector<std::weak_ptr<QueueCore>> fed;
    std::vector<std::unique_ptr<QueueLocal>> abandoned;
    std::uint64_t exit_hook_generation = ~std::uint64_t{0};

    static QueueRegistry& get() {
        static auto* registry = new QueueRegistry;  // leaked: used by the exit sequence
        return *registry;
    }
};

void flush_all_queues() {
    std::vector<std::shared_ptr<QueueCore>> cores;
    {
        QueueRegistry& registry = QueueRegistry::get();
        std::lock_guard lock(registry.mutex);
        for (auto& weak : registry.fed)
            if (auto core = weak.lock()) cores.push_back(std::move(core));
        registry.fed.clear();
    }
    for (auto& core : cores)
        if (!core->join_cancelled()) core->flush();
}

}  // namespace

// ---- process-local state and the feeder ------------------------------------------------------

QueueLocal& QueueCore::local() {
    const std::uint64_t now = fork_generation();
    if (generation_ == now) [[likely]]
        return *local_;
    // A forked child: the feeder and its messages stayed in the parent.
    QueueRegistry& registry = QueueRegistry::get();
    std::lock_guard lock(registry.mutex);
    if (generation_ != now) {
        registry.abandoned.push_back(std::move(local_));
        local_ = std::make_unique<QueueLocal>();
        backlog_in_use_.store(false, std::memory_order_relaxed);
        generation_ = now;
    }
    return *local_;
}

void QueueCore::enqueue_backlog(std::vector<std::byte>& bytes, const TypeTag& tag) {
    QueueLocal& state = local();
    std::unique_lock lock(state.mutex);
    std::vector<std::byte> spare;
    if (!state.spare_buffers.empty()) {
        spare = std::move(state.spare_buffers.back());
        state.spare_buffers.pop_back();
    }
    state.backlog.push_back(PendingMessage{std::exchange(bytes, std::move(spare)), tag});
    backlog_in_use_.store(true, std::memory_order_relaxed);
    if (state.feeder_running) return;
    state.feeder_running = true;
    lock.unlock();
    {
        QueueRegistry& registry = QueueRegistry::get();
        std::lock_guard guard(registry.mutex);
        const std::uint64_t now = fork_generation();
        if (registry.exit_hook_generation != now) {
            registry.exit_hook_generation = now;
            registry.fed.clear();
            at_exit(ExitPhase::after_children, flush_all_queues);
        }
        if (exit_flush_generation_ != now) {
            exit_flush_generation_ = now;
            std::erase_if(registry.fed, [](const std::weak_ptr<QueueCore>& core) { return core.expired(); });
            registry.fed.push_back(weak_from_this());
        }
    }
    try {
        std::thread(feed, shared_from_this()).detach();
    } catch (const std::system_error& e) {
        lock.lock();
        state.feeder_running = false;
        throw OSError("starting a queue's feeder thread", e.code().value());
    }
}

void QueueCore::feed(std::shared_ptr<QueueCore> self) {
    QueueLocal& state = self->local();
    for (;;) {
        PendingMessage* next;
        {
            std::lock_guard lock(state.mutex);
            if (state.backlog.empty()) {
                state.feeder_running = false;
                self->backlog_in_use_.store(false, std::memory_order_relaxed);
                state.flushed.notify_all();
                return;
            }
            next = &state.backlog.front();  // deque: stays valid while others push_back
        }
        try {
            self->write_blocking(next->bytes, next->tag, Deadline::never());
        } catch (const std::exception& e) {
            get_logger().error("queue feeder: a message could not be written and is dropped: {}", e.what());
        }
        std::lock_guard lock(state.mutex);
        if (state.spare_buffers.size() < kSpareBuffers && next->bytes.capacity() <= kSpareBufferBytes)
            state.spare_buffers.push_back(std::move(next->bytes));
        state.backlog.pop_front();
    }
}

// put() of an unbounded Queue while messages of this process wait for the feeder: true when the
// feeder wrote them all out, and this message can go to the ring directly behind them; false as
// soon as the consumers take nothing for `patience` (they are stalled: the message joins the
// backlog and put() returns, as Python's does). Waiting while the consumers move is put()'s own
// wait for room, carried over to the feeder's messages. Without it, one stall of the consumers
// (a process descheduled for a millisecond) would send every later message of a producer faster
// than its consumers through the feeder for good: a thread beside the producer on its CPU, and a
// copy and an allocation per message (0.4-0.5 GB/s instead of 9-12 for 1 MiB messages).
bool QueueCore::wait_for_feeder(std::chrono::nanoseconds patience) {
    QueueLocal& state = local();
    std::unique_lock lock(state.mutex);
    std::uint64_t head = shared_->head.load(std::memory_order_acquire);
    for (;;) {
        if (!state.feeder_running) return true;
        if (state.flushed.wait_until(lock, Deadline::after(patience).steady_time(), [&] { return !state.feeder_running; }))
            return true;
        const std::uint64_t moved = shared_->head.load(std::memory_order_acquire);
        if (moved == head) return false;
        head = moved;
    }
}

void QueueCore::flush() {
    QueueLocal& state = local();
    std::unique_lock lock(state.mutex);
    state.flushed.wait(lock, [&] { return !state.feeder_running; });
}

void QueueCore::join_thread() {
    if (!closed()) throw UsageError(fmt::format("Queue {} not closed", repr()));
    if (!join_cancelled()) flush();
}

// ---- producers -------------------------------------------------------------------------------

int QueueCore::lock_producers(std::int64_t timeout_ns) {
    const int rc = robust_acquire(shared_->put_lock, timeout_ns);
    if (rc != EOWNERDEAD) return rc;
    repair_producers();
    return 0;
}

// A producer died holding put_lock: publish what it had committed to, end a message it was writing
// in chunks.
void QueueCore::repair_producers() {
    QueueShared& s = *shared_;
    const std::uint64_t intent_tail = s.intent_tail.load(std::memory_order_relaxed);
    if (s.put_count.load(std::memory_order_relaxed) == s.intent_put_count.load(std::memory_order_relaxed) &&
        s.tail.load(std::memory_order_relaxed) != intent_tail) {
        // It died between the count and the tail: the record's bytes are complete.
        publish(intent_tail, false);
    }
    s.head_cache = s.head.load(std::memory_order_acquire);
    s.get_count_cache = s.get_count.load(std::memory_order_acquire);
    if (s.streaming.load(std::memory_order_relaxed) != 0) abandon_stream();
    get_logger().debug("queue: repaired after a producer died holding the queue's lock");
}

std::uint64_t QueueCore::free_space(std::uint64_t needed) {
    QueueShared& s = *shared_;
    const std::uint64_t tail = s.tail.load(std::memory_order_relaxed);
    std::uint64_t free = capacity_ - (tail - s.head_cache);
    if (free < needed) {
        s.head_cache = s.head.load(std::memory_order_acquire);
        free = capacity_ - (tail - s.head_cache);
    }
    return free;
}

bool QueueCore::count_allows() {
    QueueShared& s = *shared_;
    if (s.maxsize <= 0) return true;
    const std::uint64_t puts = s.put_count.load(std::memory_order_relaxed);
    if (puts - s.get_count_cache < static_cast<std::uint64_t>(s.maxsize)) return true;
    s.get_count_cache = s.get_count.load(std::memory_order_acquire);
    return puts - s.get_count_cache < static_cast<std::uint64_t>(s.maxsize);
}

void QueueCore::write_record(std::uint64_t position, RecordKind kind, const TypeTag& tag, const std::byte* payload,
                             std::size_t length) noexcept {
    const RecordHeader header{static_cast<std::uint32_t>(length), kind, tag.hash};
    const std::uint64_t offset = position & (capacity_ - 1);
    std::memcpy(ring_ + offset, &header, sizeof header);
    const std::uint64_t start = (offset + kRecordHeaderSize) & (capacity_ - 1);
    const std::size_t first = std::min<std::size_t>(length, capacity_ - start);
    if (first > 0) std::memcpy(ring_ + start, payload, first);
    if (length > first) std::memcpy(ring_, payload + first, length - first);
}

void QueueCore::publish(std::uint64_t new_tail, bool completes_message) noexcept {
    QueueShared& s = *shared_;
    const std::uint64_t count = s.put_count.load(std::memory_order_relaxed) + (completes_message ? 1 : 0);
    s.intent_tail.store(new_tail, std::memory_order_relaxed);
    s.intent_put_count.store(count, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    s.put_count.store(count, std::memory_order_relaxed);
    s.tail.store(new_tail, std::memory_order_release);
    asymmetric_fence_light();  // against the heavy fence of a consumer about to sleep
    if (s.data_waiting.load(std::memory_order_relaxed) != 0 && s.data_waiting.exchange(0, std::memory_order_acq_rel) != 0) {
        s.data_seq.fetch_add(1, std::memory_order_release);
        futex_wake(&s.data_seq, kWakeAll);
    }
}

// Under put_lock: writes a message that fits in one record if there is room now.
bool QueueCore::write_now(std::span<const std::byte> bytes, const TypeTag& tag) {
    const std::uint64_t size = record_size(bytes.size());
    if (!count_allows() || free_space(size + kRecordHeaderSize) < size + kRecordHeaderSize) return false;
    const std::uint64_t tail = shared_->tail.load(std::memory_order_relaxed);
    write_record(tail, kWhole, tag, bytes.data(), bytes.size());
    publish(tail + size, true);
    return true;
}

// Sleeps until a consumer frees room (or takes a message); false when the deadline passed. The
// caller re-checks the room: without the lock, what was seen here may be taken by another producer.
bool QueueCore::wait_for_space(const Deadline& deadline, std::uint64_t needed, std::uint64_t want) {
    QueueShared& s = *shared_;
    if (deadline.finite() && deadline.passed()) return false;
    if (spin_until(space_spin_, 1, [&] {
            const std::uint64_t free = capacity_ - (s.tail.load(std::memory_order_relaxed) - s.head.load(std::memory_order_acquire));
            return free >= needed && (s.maxsize <= 0 || s.put_count.load(std::memory_order_relaxed) -
                                                                s.get_count.load(std::memory_order_acquire) <
                                                            static_cast<std::uint64_t>(s.maxsize));
        }))
        return true;
    s.space_waiters.fetch_add(1, std::memory_order_seq_cst);
    const std::uint64_t tail = s.tail.load(std::memory_order_relaxed);
    std::uint64_t free = capacity_ - (tail - s.head.load(std::memory_order_seq_cst));
    const bool counted = s.maxsize <= 0 || s.put_count.load(std::memory_order_relaxed) -
                                                       s.get_count.load(std::memory_order_seq_cst) <
                                                   static_cast<std::uint64_t>(s.maxsize);
    // Woken when `want` bytes are free (or `needed`, if more), or at the next message taken when
    // what is missing is a slot of a bounded queue.
    const std::uint64_t wanted = counted ? tail + std::min(capacity_, std::max(needed, want)) - capacity_ : 0;
    std::uint64_t current = s.space_wanted.load(std::memory_order_relaxed);
    while (wanted < current &&
           !s.space_wanted.compare_exchange_weak(current, wanted, std::memory_order_seq_cst)) {
    }
    const std::uint32_t seq = s.space_seq.load(std::memory_order_seq_cst);
    // Consumers store the head, then look at space_waiters with only a light fence: make them
    // fence, so that either they see this waiter or it sees their head. Without that, sleep in
    // short slices.
    const bool fenced = asymmetric_fence_heavy();
    free = capacity_ - (tail - s.head.load(std::memory_order_seq_cst));
    const bool counted_now = s.maxsize <= 0 || s.put_count.load(std::memory_order_relaxed) -
                                                           s.get_count.load(std::memory_order_seq_cst) <
                                                       static_cast<std::uint64_t>(s.maxsize);
    int rc = 0;
    if (free < needed || !counted_now)
        rc = futex_wait(&s.space_seq, seq, fenced ? deadline : deadline.capped(kUnfencedSleep));
    s.space_waiters.fetch_sub(1, std::memory_order_relaxed);
    return rc != ETIMEDOUT || !deadline.passed();
}

void QueueCore::write_blocking(std::span<const std::byte> bytes, const TypeTag& tag, const Deadline& deadline) {
    const std::uint64_t size = record_size(bytes.size());
    const bool chunked = size > max_record_;
    for (;;) {
        if (lock_producers(deadline) != 0) throw Full();
        {
            const MutexStateGuard held = producers_held();
            if (chunked) {
                if (count_allows()) {
                    stream(bytes, tag, deadline, std::nullopt);
                    return;
                }
            } else if (write_now(bytes, tag)) {
                return;
            }
        }
        if (!wait_for_space(deadline, chunked ? kRecordHeaderSize : size + kRecordHeaderSize, capacity_ / 4)) throw Full();
    }
}

// Under put_lock: writes a message larger than a record in chunks, waiting for room as consumers
// take the earlier ones. Always leaves room for an abort record. When no room comes within
// `stall` (if set), abandons the message and returns false; when the deadline passes, abandons it
// and throws Full.
bool QueueCore::stream(std::span<const std::byte> bytes, const TypeTag& tag, const Deadline& deadline,
                       std::optional<std::chrono::nanoseconds> stall) {
    QueueShared& s = *shared_;
    const std::uint64_t max_payload = max_record_ - kRecordHeaderSize;
    s.streaming.store(1, std::memory_order_relaxed);
    std::size_t offset = 0;
    while (offset < bytes.size()) {
        const std::size_t remaining = bytes.size() - offset;
        const std::size_t chunk = std::min<std::size_t>(remaining, max_payload);
        const std::uint64_t needed = record_size(chunk) + kRecordHeaderSize;
        while (free_space(needed) < needed) {
            const Deadline until = stall ? deadline.capped(*stall) : deadline;
            if (!wait_for_space(until, needed, capacity_ / 4) && free_space(needed) < needed) {
                abandon_stream();
                if (stall && !deadline.passed()) return false;
                throw Full();
            }
        }
        const RecordKind kind = offset == 0 ? kFirst : (offset + chunk == bytes.size() ? kLast : kMiddle);
        const std::uint64_t tail = s.tail.load(std::memory_order_relaxed);
        write_record(tail, kind, tag, bytes.data() + offset, chunk);
        publish(tail + record_size(chunk), kind == kLast);
        offset += chunk;
    }
    s.streaming.store(0, std::memory_order_relaxed);
    return true;
}

// Under put_lock, mid-stream: ends the message with an abort record, for which there is always room.
void QueueCore::abandon_stream() noexcept {
    QueueShared& s = *shared_;
    const std::uint64_t tail = s.tail.load(std::memory_order_relaxed);
    const RecordHeader header{0, kAbort, 0};
    std::memcpy(ring_ + (tail & (capacity_ - 1)), &header, sizeof header);
    publish(tail + kRecordHeaderSize, false);
    s.streaming.store(0, std::memory_order_relaxed);
}

// An unbounded Queue's put(): writes the message itself if room comes within the queue's room
// wait (QueueOptions::room_wait), else hands it to the feeder; true when written here.
bool QueueCore::put_unbounded(std::vector<std::byte>& bytes, const TypeTag& tag) {
    QueueShared& s = *shared_;
    const std::chrono::nanoseconds patience(s.room_wait_ns);
    if (backlog_in_use_.load(std::memory_order_relaxed) && !wait_for_feeder(patience))
        return false;  // behind this process's waiting messages
    if (s.streaming.load(std::memory_order_relaxed) != 0) return false;  // behind another producer's long message
    std::optional<Deadline> deadline;  // computed only when there is something to wait for
    const auto until = [&]() -> const Deadline& {
        if (!deadline) deadline = Deadline::after(patience);
        return *deadline;
    };
    if (lock_producers(0) != 0 && lock_producers(until()) != 0) return false;
    MutexStateGuard held = producers_held();
    const std::uint64_t size = record_size(bytes.size());
    if (size > max_record_) {
        // No deadline for the whole message, which may take a while to stream: only each
        // chunk's wait for room is bounded.
        return stream(bytes, tag, Deadline::never(), patience);
    }
    for (;;) {
        const bool written = write_now(bytes, tag);
        held.unlock();
        if (written) return true;
        // Woken when a sixteenth of the ring is free: one wake-up per many messages when the
        // consumers are merely slower than this producer.
        if (!wait_for_space(until(), size + kRecordHeaderSize, capacity_ / 16)) return false;
        if (lock_producers(until()) != 0) return false;
        held = producers_held();
    }
}

void QueueCore::put(std::vector<std::byte>& bytes, const TypeTag& tag, std::int64_t timeout) {
    if (closed()) throw UsageError(fmt::format("Queue {} is closed", repr()));
    register_type(tag);
    QueueShared& s = *shared_;
    const bool joinable = kind_ == QueueKind::joinable;
    if (joinable) s.unfinished.fetch_add(1, std::memory_order_relaxed);
    try {
        if (kind_ != QueueKind::simple && s.maxsize <= 0) {
            // Unbounded: never waits longer than the room wait. The feeder takes the rest.
            if (!put_unbounded(bytes, tag)) enqueue_backlog(bytes, tag);
            return;
        }
        const Deadline deadline = Deadline::from_ns(timeout);
        write_blocking(bytes, tag, deadline);
    } catch (...) {
        if (joinable && s.unfinished.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            s.join_seq.fetch_add(1, std::memory_order_release);
            futex_wake(&s.join_seq, kWakeAll);
        }
        throw;
    }
}

// ---- consumers -------------------------------------------------------------------------------

// A consumer died holding get_lock: finish the count it had committed to; if it was taking a
// message in chunks, the rest of that message is to be skipped.
void QueueCore::repair_consumers(bool& skipping) {
    QueueShared& s = *shared_;
    if (s.head.load(std::memory_order_relaxed) == s.intent_head.load(std::memory_order_relaxed) &&
        s.get_count.load(std::memory_order_relaxed) != s.intent_get_count.load(std::memory_order_relaxed)) {
        s.get_count.store(s.intent_get_count.load(std::memory_order_relaxed), std::memory_order_release);
    }
    skipping = s.partial.load(std::memory_order_relaxed) != 0;
    s.tail_cache = s.head.load(std::memory_order_relaxed);
    get_logger().debug("queue: repaired after a consumer died holding the queue's lock");
}

void QueueCore::consume(std::uint64_t new_head, bool completes_message, bool partial) noexcept {
    QueueShared& s = *shared_;
    const std::uint64_t count = s.get_count.load(std::memory_order_relaxed) + (completes_message ? 1 : 0);
    s.intent_head.store(new_head, std::memory_order_relaxed);
    s.intent_get_count.store(count, std::memory_order_relaxed);
    s.partial.store(partial ? 1 : 0, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    s.head.store(new_head, std::memory_order_release);
    s.get_count.store(count, std::memory_order_release);
    asymmetric_fence_light();  // against the heavy fence of a producer about to sleep
    if (s.space_waiters.load(std::memory_order_relaxed) != 0 &&
        new_head >= s.space_wanted.load(std::memory_order_relaxed)) {
        s.space_wanted.store(~std::uint64_t{0}, std::memory_order_relaxed);
        s.space_seq.fetch_add(1, std::memory_order_seq_cst);
        futex_wake(&s.space_seq, kWakeAll);
    }
}

void QueueCore::read_payload(std::uint64_t position, std::size_t length, std::byte* out) const noexcept {
    const std::uint64_t start = (position + kRecordHeaderSize) & (capacity_ - 1);
    const std::size_t first = std::min<std::size_t>(length, capacity_ - start);
    if (first > 0) std::memcpy(out, ring_ + start, first);
    if (length > first) std::memcpy(out + first, ring_, length - first);
}

// Mid-message: is the producer that is writing the rest still alive? Its death shows as a lock
// whose owner died; repairing it appends the abort record this consumer is waiting for.
void QueueCore::check_producer_alive() {
    if (lock_producers(0) == 0) {
        const MutexStateGuard held = producers_held();  // released at once: the repair was the point
    }
}

bool QueueCore::wait_for_data(std::uint64_t head, const Deadline& deadline, bool in_message) {
    QueueShared& s = *shared_;
    if (s.tail_cache != head) {
        draining_ = true;
        return true;
    }
    std::uint64_t tail = s.tail.load(std::memory_order_acquire);
    if (tail != head) {
        s.tail_cache = tail;
        draining_ = true;
        return true;
    }
    const bool may_block = in_message || !deadline.finite() || !deadline.passed();
    if (!may_block) return false;
    // A consumer that was taking messages without waiting has caught up with a producer that is
    // likely still at work: looking again at once would take the tail's line from it for one
    // message. Waiting a microsecond lets a batch accumulate (twice the messages a second here).
    // A consumer that had to wait last time is answering requests: it looks at once.
    const unsigned first_pauses = draining_ ? kMaxSpinPauses : 1;
    draining_ = false;
    if (spin_until(data_spin_, first_pauses, [&] { return (tail = s.tail.load(std::memory_order_acquire)) != head; })) {
        s.tail_cache = tail;
        return true;
    }
    for (;;) {
        s.data_waiting.exchange(1, std::memory_order_seq_cst);
        const std::uint32_t seq = s.data_seq.load(std::memory_order_acquire);
        // Producers publish, then look at data_waiting with only a light fence: make them fence
        // (see wait_for_space).
        const bool fenced = asymmetric_fence_heavy();
        tail = s.tail.load(std::memory_order_seq_cst);
        if (tail == head) {
            Deadline until = in_message ? Deadline::after(kProducerCheckInterval) : deadline;
            if (!fenced) until = until.capped(kUnfencedSleep);
            futex_wait(&s.data_seq, seq, until);
            tail = s.tail.load(std::memory_order_acquire);
        }
        s.data_waiting.store(0, std::memory_order_relaxed);
        if (tail != head) {
            s.tail_cache = tail;
            return true;
        }
        if (in_message) {
            check_producer_alive();
        } else if (deadline.passed()) {
            return false;
        }
    }
}

namespace {

// The bytes of a message being reassembled from chunks, in a per-thread buffer that keeps its size
// from one message to the next: growing a vector zero-fills what is about to be overwritten, and
// a fresh megabyte costs page faults, on every message otherwise.
class Assembly {
public:
    std::byte* extend(std::size_t n) {
        if (buffer_.size() < size_ + n) buffer_.resize(std::max(size_ + n, buffer_.size() * 2));
        std::byte* p = buffer_.data() + size_;
        size_ += n;
        return p;
    }
    std::span<const std::byte> bytes() const noexcept { return {buffer_.data(), size_}; }
    void reset() {
        size_ = 0;
        if (buffer_.size() > kKeptBytes) std::vector<std::byte>().swap(buffer_);
    }

private:
    static constexpr std::size_t kKeptBytes = std::size_t{64} << 20;
    std::vector<std::byte> buffer_;
    std::size_t size_ = 0;
};

}  // namespace

void QueueCore::get(const TypeTag& tag, QueueSink& decode, std::int64_t timeout) {
    if (closed()) throw UsageError(fmt::format("Queue {} is closed", repr()));
    QueueShared& s = *shared_;
    const Deadline deadline = Deadline::from_ns(timeout);
    bool skipping = false;
    {
        const int rc = robust_acquire(s.get_lock, deadline.remaining_ns());
        if (rc == ETIMEDOUT) throw Empty();
        if (rc == EOWNERDEAD) repair_consumers(skipping);
    }
    const MutexStateGuard held(s.get_lock, std::adopt_lock);

    thread_local Assembly assembly;
    bool assembling = false;
    std::uint64_t message_tag = 0;
    for (;;) {
        const std::uint64_t head = s.head.load(std::memory_order_relaxed);
        if (!wait_for_data(head, deadline, assembling || skipping)) throw Empty();
        RecordHeader header;
        std::memcpy(&header, ring_ + (head & (capacity_ - 1)), sizeof header);
        const std::uint64_t next = head + record_size(header.length);
        if (next - head > max_record_ || next > s.tail_cache)
            throw ProtocolError(fmt::format("queue: corrupt record (length {}) at position {}", header.length, head));
        switch (header.kind) {
            case kWhole: {
                if (skipping || assembling) {
                    // Cannot happen while producers hold their lock across a message's chunks;
                    // if it does, the unfinished message is gone and this one stands alone.
                    skipping = assembling = false;
                }
                if (header.tag != tag.hash) {
                    consume(next, true, false);
                    throw_type_mismatch(header.tag, tag);
                }
                const std::uint64_t start = (head + kRecordHeaderSize) & (capacity_ - 1);
                try {
                    if (start + header.length <= capacity_) {
                        decode(std::span<const std::byte>(ring_ + start, header.length));
                    } else {
                        assembly.reset();
                        read_payload(head, header.length, assembly.extend(header.length));
                        decode(assembly.bytes());
                    }
                } catch (...) {
                    consume(next, true, false);
                    throw;
                }
                consume(next, true, false);
                return;
            }
            case kFirst:
                skipping = false;
                assembling = true;
                message_tag = header.tag;
                assembly.reset();
                read_payload(head, header.length, assembly.extend(header.length));
                consume(next, false, true);
                break;
            case kMiddle:
            case kLast: {
                const bool last = header.kind == kLast;
                if (assembling) read_payload(head, header.length, assembly.extend(header.length));
                // Every message is counted once, at its last record, whoever reads it.
                consume(next, last, !last);
                if (!last) break;
                if (skipping || !assembling) {
                    skipping = false;
                    break;
                }
                if (message_tag != tag.hash) throw_type_mismatch(message_tag, tag);
                decode(assembly.bytes());
                return;
            }
            case kAbort:
                assembling = skipping = false;
                consume(next, false, false);
                break;
            default:
                throw ProtocolError(fmt::format("queue: corrupt record (kind {}) at position {}", header.kind, head));
        }
    }
}

// ---- types -----------------------------------------------------------------------------------

void QueueCore::register_type(const TypeTag& tag) {
    if (registered_tag_.load(std::memory_order_relaxed) == tag.hash) [[likely]]
        return;
    QueueShared& s = *shared_;
    for (auto& entry : s.names) {
        std::uint64_t current = entry.tag.load(std::memory_order_acquire);
        if (current == tag.hash) break;
        if (current == 0) {
            // Claim the slot with a tag that readers ignore until the name is written.
            std::uint64_t expected = 0;
            if (entry.tag.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
                const std::size_t n = std::min(tag.name.size(), kTypeNameSize - 1);
                std::memcpy(entry.name, tag.name.data(), n);
                entry.name[n] = '\0';
                entry.tag.store(tag.hash, std::memory_order_release);
                break;
            }
            if (expected == tag.hash) break;
        }
    }
    registered_tag_.store(tag.hash, std::memory_order_relaxed);
}

std::string QueueCore::type_name_of(std::uint64_t tag) const {
    for (const auto& entry : shared_->names)
        if (entry.tag.load(std::memory_order_acquire) == tag) return std::string(entry.name);
    return fmt::format("a type with tag {:#x}", tag);
}

void QueueCore::throw_type_mismatch(std::uint64_t got, const TypeTag& wanted) const {
    throw DecodeError(fmt::format("queue: the message is a {}, get() asked for a {}", type_name_of(got), wanted.name));
}

// ---- the interface of queue.hpp -------------------------------------------------------------

std::shared_ptr<QueueCore> queue_create(QueueKind kind, long maxsize, const QueueOptions& options) {
    const std::size_t capacity = capacity_for(options.buffer_size);
    SharedBlock block = allocate_shared_block(BlockKind::queue, kRingOffset + capacity, 64);
    auto* s = new (block.payload()) QueueShared{};
    s->magic = kQueueMagic;
    s->capacity = capacity;
    s->maxsize = kind == QueueKind::simple ? 0 : maxsize;
    s->kind = static_cast<std::uint32_t>(kind);
    s->space_wanted.store(~std::uint64_t{0}, std::memory_order_relaxed);
    const Timeout room_wait = to_timeout(options.room_wait);  // rounded up; too long for int64: forever
    s->room_wait_ns = room_wait ? room_wait->count() : std::numeric_limits<std::int64_t>::max();
    mutex_init(&s->put_lock, false);
    mutex_init(&s->get_lock, false);
    return std::make_shared<QueueCore>(std::move(block), kind);
}

std::shared_ptr<QueueCore> queue_import(SharedBlock block, QueueKind kind) {
    const auto* s = block.as<const QueueShared>();
    if (shared_block_size(block) < kRingOffset + kMinCapacity || s->magic != kQueueMagic ||
        std::popcount(s->capacity) != 1 || shared_block_size(block) < kRingOffset + s->capacity)
        throw DecodeError("shared memory: the block is not a queue");
    if (s->kind != static_cast<std::uint32_t>(kind)) {
        static constexpr const char* names[] = {"?", "a Queue", "a SimpleQueue", "a JoinableQueue"};
        const auto name = [](std::uint32_t k) { return k <= 3 ? names[k] : names[0]; };
        throw DecodeError(fmt::format("shared memory: expected {}, received {}", name(static_cast<std::uint32_t>(kind)),
                                      name(s->kind)));
    }
    return std::make_shared<QueueCore>(std::move(block), kind);
}

const SharedBlock& queue_block(const QueueCore& core) { return core.block(); }

void queue_put(QueueCore& core, std::vector<std::byte>& bytes, const TypeTag& tag, std::int64_t timeout) {
    core.put(bytes, tag, timeout);
}

void queue_get(QueueCore& core, const TypeTag& tag, QueueSink& decode, std::int64_t timeout) {
    core.get(tag, decode, timeout);
}

long queue_qsize(const QueueCore& core) {
    const QueueShared& s = core.shared();
    const std::uint64_t gets = s.get_count.load(std::memory_order_acquire);
    const std::uint64_t puts = s.put_count.load(std::memory_order_acquire);
    return puts > gets ? static_cast<long>(puts - gets) : 0;
}

long queue_maxsize(const QueueCore& core) {
    const std::int64_t m = core.shared().maxsize;
    return m > 0 ? static_cast<long>(m) : 0;
}

bool queue_full(const QueueCore& core) {
    const long maxsize = queue_maxsize(core);
    return maxsize > 0 && queue_qsize(core) >= maxsize;
}

void queue_close(QueueCore& core) { core.close(); }
void queue_join_thread(QueueCore& core) { core.join_thread(); }
void queue_cancel_join_thread(QueueCore& core) { core.cancel_join_thread(); }

void queue_task_done(QueueCore& core) {
    QueueShared& s = core.shared();
    std::int64_t current = s.unfinished.load(std::memory_order_relaxed);
    do {
        if (current <= 0) throw UsageError("task_done() called too many times");
    } while (!s.unfinished.compare_exchange_weak(current, current - 1, std::memory_order_acq_rel));
    if (current == 1) {
        s.join_seq.fetch_add(1, std::memory_order_release);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (s.join_waiters.load(std::memory_order_relaxed) != 0) futex_wake(&s.join_seq, kWakeAll);
    }
}

void queue_join(QueueCore& core) {
    QueueShared& s = core.shared();
    for (;;) {
        s.join_waiters.fetch_add(1, std::memory_order_seq_cst);
        const std::uint32_t seq = s.join_seq.load(std::memory_order_acquire);
        const bool done = s.unfinished.load(std::memory_order_seq_cst) <= 0;
        if (!done) futex_wait(&s.join_seq, seq, Deadline::never());
        s.join_waiters.fetch_sub(1, std::memory_order_relaxed);
        if (done || s.unfinished.load(std::memory_order_acquire) <= 0) return;
    }
}

std::string queue_repr(const QueueCore& core) { return core.repr(); }

void queue_throw_moved_from() {
    throw UsageError("a Queue has no shared memory (it was moved from, or default-constructed while a child decoded "
                     "its arguments and never given a queue)");
}

std::vector<std::byte>& queue_encode_buffer() {
    thread_local std::vector<std::byte> buffer;
    if (buffer.capacity() > (std::size_t{1} << 26)) {
        // One huge message should not pin its size for the life of the thread.
        std::vector<std::byte>().swap(buffer);
    }
    return buffer;
}

}  // namespace mproc::detail
