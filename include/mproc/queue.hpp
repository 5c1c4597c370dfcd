#pragma once
// Queues between processes (Python's multiprocessing.Queue, SimpleQueue and JoinableQueue):
// many producers, many consumers, values of any codec type, millions of small messages a second.
//
//   mproc::Queue<std::string> q;
//   mproc::Process p([](mproc::Queue<std::string> q) { q.put("hello"); }, q);
//   p.start();
//   std::string greeting = q.get();
//   p.join();
//
// A queue is a ring buffer in shared memory (a sealed memfd, like every primitive in
// synchronize.hpp) with two robust locks, one for producers and one for consumers, and futex
// wake-ups; a consumer spins (up to 50 µs, yielding the CPU, less when spins keep failing, not at
// all while the machine has more runnable tasks than CPUs) before it sleeps, so a reply that comes
// from a running process never pays for a wake-up. Handles are references: copies share the queue, and a
// copy given to a Process as an argument is the same queue in the child under every start method
// (inherited under fork; its memory sent with the start request under spawn and forkserver).
// Sending a queue anywhere else (a Connection, another Queue, a Pool task) is a UsageError, as
// Python refuses to pickle a Queue outside process creation; Pool workers get one through the
// Pool's initializer arguments.
//
// Python's semantics:
//  - Queue(maxsize): maxsize <= 0 is unbounded, and then put() never blocks for long: it waits at
//    most QueueOptions::room_wait (1 ms) for room in the shared buffer. A message that finds none
//    in that time (the consumers are stalled) waits in this process's memory and a feeder thread,
//    started on demand, writes it out in order; later messages of this process queue up behind
//    it, so each producer's order is kept (a later put() waits for the feeder while consumers keep
//    taking something every room_wait, then writes to the shared buffer itself again). Memory: the shared buffer has a fixed size (QueueOptions::buffer_size); what waits
//    beyond it costs the producer's own heap, one encoded copy per message, until consumers catch
//    up.
//  - A bounded Queue (maxsize > 0): put() waits until fewer than maxsize messages are in the
//    queue and the message is in the shared buffer; with block == false or a timeout it raises
//    Full instead. (Python's put returns once the message is in its feeder's memory.)
//  - A process that put messages does not end until its feeder has written them out, unless
//    cancel_join_thread() was called; so what a process put is delivered even when it exits right
//    after put(). As in Python, joining a producer before its messages were consumed can wait
//    forever when the buffer is full: drain the queue first.
//  - get(block, timeout) raises Empty when nothing arrives in time; qsize() is the number of
//    messages in the shared buffer (approximate while others put and get); empty() and full()
//    follow from it. close() says this process will put and get no more (put or get afterwards is
//    a UsageError; empty(), qsize() and full() still answer, where Python's raise OSError);
//    join_thread() waits for the feeder after close().
//  - Messages of any size: one larger than the shared buffer goes through in chunks, the
//    consumer reassembling it; the only limit is memory.
//  - JoinableQueue: task_done() and join() as in Python; task_done() more times than messages
//    were put is UsageError("task_done() called too many times").
//
// Typed: Queue<T> carries T. Each message also carries a tag of its type, so a handle rebound to
// another type (rebind<U>()) that gets a message of the wrong type raises DecodeError naming both
// types; the message is consumed and the queue stays usable.
//
// Processes that die (kill -9) while using a queue:
//  - A producer killed in put(): the message it was writing is lost, and so are messages still
//    waiting in its own memory for the feeder; every message it had written out completely stays.
//    A message larger than the buffer that it was writing in chunks is discarded by the consumer
//    that was reassembling it (that consumer waits for the next message).
//  - A consumer killed in get(): the message it was reading is lost when it had started taking it
//    out of the buffer (always for a message in chunks, otherwise only after it had finished),
//    and kept for the next consumer otherwise. Nothing else is lost, and no message is ever
//    delivered twice.
//  - The locks are robust (see OwnerDiedError): the next producer or consumer repairs the queue's
//    state and goes on, and callers never see OwnerDiedError from a queue.
//  - JoinableQueue: a message lost this way is never task_done()'d, so join() waits for it, as in
//    Python.
//
// Memory ordering: put() of a message synchronizes with the get() that returns it (everything the
// producer wrote before put() is visible to the consumer after get()).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/codec_handover.hpp"
#include "mproc/detail/decoding_scope.hpp"
#include "mproc/detail/queue_core.hpp"
#include "mproc/detail/shared_block.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/detail/type_tag.hpp"
#include "mproc/errors.hpp"

namespace mproc {

struct QueueOptions {
    // Bytes of shared memory for messages in transit, rounded up to a power of two (at least
    // 4 KiB). Each message takes its encoded size plus 16 bytes, rounded up to 8.
    std::size_t buffer_size = std::size_t{1} << 20;
    // How long put() on an unbounded Queue waits for room in the buffer before it hands the
    // message to the feeder thread. Waiting a little spares a thread and a copy per message when
    // consumers are merely slower than producers; zero is Python's behaviour (the feeder takes
    // every message that does not fit at once).
    std::chrono::microseconds room_wait = std::chrono::milliseconds(1);
};

namespace detail {

// What Queue, SimpleQueue and JoinableQueue share: put, get, empty, close, and how a queue travels
// to another process. The operations on the shared ring they call are in detail/queue_core.hpp.
template <Encodable T, QueueKind Kind>
class BasicQueue {
public:
    // put(item, block = true, timeout = forever): Full when a bounded queue stays full (Queue,
    // JoinableQueue). With block == false the timeout is ignored, as in Python.
    void put(const T& item, bool block = true) { put_encoded(item, block ? kForever : 0); }
    template <class Rep, class Period>
    void put(const T& item, bool block, std::chrono::duration<Rep, Period> timeout) {
        put_encoded(item, block ? timeout_ns(timeout) : 0);
    }
    void put_nowait(const T& item) { put_encoded(item, 0); }

    // get(block = true, timeout = forever): Empty when nothing arrives in time.
    T get(bool block = true) { return get_decoded(block ? kForever : 0); }
    template <class Rep, class Period>
    T get(bool block, std::chrono::duration<Rep, Period> timeout) {
        return get_decoded(block ? timeout_ns(timeout) : 0);
    }
    T get_nowait() { return get_decoded(0); }

    bool empty() const { return queue_qsize(core()) == 0; }
    void close() { queue_close(core()); }

    std::string repr() const { return queue_repr(core()); }

    template <class Archive>
    void save(Archive& ar) const {
        save_shared_block(ar, queue_block(core()), "a Queue");
    }
    template <class Archive>
    void load(Archive& ar) {
        core_ = queue_import(load_shared_block(ar, BlockKind::queue), Kind);
    }

protected:
    BasicQueue(long maxsize, const QueueOptions& options) : core_(queue_create(Kind, maxsize, options)) {}
    // A default-constructed queue; empty while a child decodes its arguments (decoding_scope.hpp),
    // since load() replaces it at once.
    BasicQueue() : core_(ArgumentDecoding::active() ? nullptr : queue_create(Kind, 0, QueueOptions{})) {}
    explicit BasicQueue(std::shared_ptr<QueueCore> core) noexcept : core_(std::move(core)) {}

    QueueCore& core() const {
        if (!core_) queue_throw_moved_from();
        return *core_;
    }
    const std::shared_ptr<QueueCore>& shared_core() const noexcept { return core_; }

private:
    void put_encoded(const T& item, std::int64_t timeout) {
        std::vector<std::byte>& buffer = queue_encode_buffer();
        buffer.clear();
        HandoverTransaction handover;  // what the item hands over stays here if the put fails
        Encoder(buffer).write(item);
        queue_put(core(), buffer, type_tag<T>(), timeout);
        handover.commit();
    }
    T get_decoded(std::int64_t timeout) {
        TypedSink<T> sink;
        queue_get(core(), type_tag<T>(), sink, timeout);
        return std::move(*sink.value);
    }

    std::shared_ptr<QueueCore> core_;
};

// What Queue and JoinableQueue add to SimpleQueue: a maximum size and the feeder thread.
template <Encodable T, QueueKind Kind>
class FedQueue : public BasicQueue<T, Kind> {
    using Base = BasicQueue<T, Kind>;

public:
    // The number of messages in the shared buffer (approximate, as in Python).
    long qsize() const { return queue_qsize(this->core()); }
    bool full() const { return queue_full(this->core()); }
    long maxsize() const { return queue_maxsize(this->core()); }

    // After close(): waits until the feeder has written out what this process put.
    void join_thread() { queue_join_thread(this->core()); }
    // This process will not wait for its feeder when it exits (what it has not written is lost).
    void cancel_join_thread() { queue_cancel_join_thread(this->core()); }

protected:
    using Base::Base;
};

}  // namespace detail

// Python's multiprocessing.Queue.
template <Encodable T>
class Queue : public detail::FedQueue<T, detail::QueueKind::queue> {
    using Base = detail::FedQueue<T, detail::QueueKind::queue>;

public:
    // An unbounded queue with the default options.
    Queue() = default;
    // maxsize <= 0: unbounded.
    explicit Queue(long maxsize, const QueueOptions& options = {}) : Base(maxsize, options) {}

    // A handle to the same queue that carries U: for queues that carry several types. get() of a
    // message of another type raises DecodeError.
    template <Encodable U>
    Queue<U> rebind() const {
        return Queue<U>(this->shared_core());
    }

protected:
    template <Encodable>
    friend class Queue;
    explicit Queue(std::shared_ptr<detail::QueueCore> core) noexcept : Base(std::move(core)) {}
};

// Python's multiprocessing.SimpleQueue: unbounded, no feeder thread: put() writes the message to
// the shared buffer itself, waiting while the buffer is full.
template <Encodable T>
class SimpleQueue : public detail::BasicQueue<T, detail::QueueKind::simple> {
    using Base = detail::BasicQueue<T, detail::QueueKind::simple>;

public:
    SimpleQueue() = default;
    explicit SimpleQueue(const QueueOptions& options) : Base(0, options) {}
};

// Python's multiprocessing.JoinableQueue: a Queue whose consumers report each message done
// (task_done), so that join() can wait until every message put has been processed.
template <Encodable T>
class JoinableQueue : public detail::FedQueue<T, detail::QueueKind::joinable> {
    using Base = detail::FedQueue<T, detail::QueueKind::joinable>;

public:
    JoinableQueue() = default;
    explicit JoinableQueue(long maxsize, const QueueOptions& options = {}) : Base(maxsize, options) {}

    // UsageError("task_done() called too many times") when there is no unfinished message.
    void task_done() { detail::queue_task_done(this->core()); }
    // Waits until every message put has been task_done()'d.
    void join() { detail::queue_join(this->core()); }
};

}  // namespace mproc
