// Figures for Queue, against what a queue between processes can cost at the least: a
// single-producer single-consumer ring of 8-byte slots in shared memory (throughput of small
// messages), a bounded multi-producer multi-consumer ring of the same kind (2 -> 2), a bare futex
// ping-pong (request/reply) and a pipe stream (1 MiB messages).
//
// Every process a batch needs is started before the timed part and joined after it. Throughput:
// the producers wait at a start line; the time runs from opening it until the consumers have
// received every message (and checked their sum), so it covers each message arriving. The two
// processes of a 1 -> 1 figure are pinned to two different CPUs, as in lock.contended, for every
// implementation (Python too): the figure is about a producer and a consumer that run at once.
// The four processes of queue.throughput.mpmc are left to the scheduler (2 CPUs here).
//
// Beside "mproc" and "raw", some figures measure variants that say where the difference comes
// from (docs/benchmarks.md discusses them):
//   queue.pingpong        mproc.pinned, raw.pinned   the two processes pinned to two CPUs
//   queue.throughput.1mib mproc.buffer8mib           QueueOptions{.buffer_size = 8 MiB}: a 1 MiB
//                                                    message fits one record (no chunks, no feeder)
//                         mproc.bounded              Queue(maxsize = 2): put() writes the chunks
//                                                    itself instead of handing them to the feeder
//
// queue.throughput.small.loaded and queue.throughput.1mib.loaded measure mproc beside one
// busy-looping process per CPU against a pipe(2) stream of the same messages: a ring that spins
// for its messages is no reference on a machine whose CPUs are all busy.
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <vector>

#include "harness.hpp"
#include "ipc_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"

namespace {

using bench::ipc::cpu_relax;
using bench::ipc::FinishLine;
using bench::ipc::fork_child;
using bench::ipc::Gate;
using bench::ipc::PinnedToTwoCpus;
using bench::ipc::reap;
using bench::ipc::SharedObject;

constexpr std::size_t kMebibyte = std::size_t{1} << 20;

// Spins with a pause instruction, then yields the CPU after a while (so that a waiter that shares
// its CPU with the process it waits for lets that process run).
class Backoff {
public:
    void operator()() {
        if (++spins_ < 1024) {
            cpu_relax();
        } else {
            spins_ = 0;
            ::sched_yield();
        }
    }

private:
    int spins_ = 0;
};

// ---- the raw rings ---------------------------------------------------------------------------

constexpr std::size_t kRingSlots = std::size_t{1} << 16;  // 512 KiB of 8-byte slots

// Single producer, single consumer: each side owns its index and caches the other's.
struct SpscRing {
    alignas(64) std::atomic<std::uint64_t> tail{0};  // written by the producer
    std::uint64_t head_cache = 0;                    // the producer's
    alignas(64) std::atomic<std::uint64_t> head{0};  // written by the consumer
    std::uint64_t tail_cache = 0;                    // the consumer's
    alignas(64) std::int64_t slots[kRingSlots];

    void push(std::int64_t value) {
        const std::uint64_t t = tail.load(std::memory_order_relaxed);
        if (t - head_cache == kRingSlots) {
            Backoff backoff;
            while (t - (head_cache = head.load(std::memory_order_acquire)) == kRingSlots) backoff();
        }
        slots[t & (kRingSlots - 1)] = value;
        tail.store(t + 1, std::memory_order_release);
    }
    std::int64_t pop() {
        const std::uint64_t h = head.load(std::memory_order_relaxed);
        if (h == tail_cache) {
            Backoff backoff;
            while (h == (tail_cache = tail.load(std::memory_order_acquire))) backoff();
        }
        const std::int64_t value = slots[h & (kRingSlots - 1)];
        head.store(h + 1, std::memory_order_release);
        return value;
    }
};

// The same ring without the cached indices: every push reads the consumer's head and every pop
// the producer's tail, as a plain head/tail ring does.
struct PlainSpscRing {
    alignas(64) std::atomic<std::uint64_t> tail{0};
    alignas(64) std::atomic<std::uint64_t> head{0};
    alignas(64) std::int64_t slots[kRingSlots];

    void push(std::int64_t value) {
        const std::uint64_t t = tail.load(std::memory_order_relaxed);
        Backoff backoff;
        while (t - head.load(std::memory_order_acquire) == kRingSlots) backoff();
        slots[t & (kRingSlots - 1)] = value;
        tail.store(t + 1, std::memory_order_release);
    }
    std::int64_t pop() {
        const std::uint64_t h = head.load(std::memory_order_relaxed);
        Backoff backoff;
        while (h == tail.load(std::memory_order_acquire)) backoff();
        const std::int64_t value = slots[h & (kRingSlots - 1)];
        head.store(h + 1, std::memory_order_release);
        return value;
    }
};

// Many producers, many consumers (Dmitry Vyukov's bounded MPMC queue): each cell has a sequence
// number saying whose turn it is; producers and consumers claim positions with a compare-exchange.
struct MpmcRing {
    struct Cell {
        std::atomic<std::uint64_t> sequence;
        std::int64_t value;
    };
    alignas(64) std::atomic<std::uint64_t> enqueue_position{0};
    alignas(64) std::atomic<std::uint64_t> dequeue_position{0};
    alignas(64) Cell cells[kRingSlots];

    MpmcRing() {
        for (std::size_t i = 0; i < kRingSlots; ++i) cells[i].sequence.store(i, std::memory_order_relaxed);
    }
    void push(std::int64_t value) {
        Backoff backoff;
        std::uint64_t position = enqueue_position.load(std::memory_order_relaxed);
        Cell* cell;
        for (;;) {
            cell = &cells[position & (kRingSlots - 1)];
            const auto difference = static_cast<std::int64_t>(cell->sequence.load(std::memory_order_acquire) - position);
            if (difference == 0) {
                if (enqueue_position.compare_exchange_weak(position, position + 1, std::memory_order_relaxed)) break;
            } else {
                if (difference < 0) backoff();  // full
                position = enqueue_position.load(std::memory_order_relaxed);
            }
        }
        cell->value = value;
        cell->sequence.store(position + 1, std::memory_order_release);
    }
    std::int64_t pop() {
        Backoff backoff;
        std::uint64_t position = dequeue_position.load(std::memory_order_relaxed);
        Cell* cell;
        for (;;) {
            cell = &cells[position & (kRingSlots - 1)];
            const auto difference =
                static_cast<std::int64_t>(cell->sequence.load(std::memory_order_acquire) - (position + 1));
            if (difference == 0) {
                if (dequeue_position.compare_exchange_weak(position, position + 1, std::memory_order_relaxed)) break;
            } else {
                if (difference < 0) backoff();  // empty
                position = dequeue_position.load(std::memory_order_relaxed);
            }
        }
        const std::int64_t value = cell->value;
        cell->sequence.store(position + kRingSlots, std::memory_order_release);
        return value;
    }
};

// The sum of 1..n, what a consumer of the messages 1..n checks.
constexpr std::int64_t sum_to(std::size_t n) { return static_cast<std::int64_t>(n) * static_cast<std::int64_t>(n + 1) / 2; }

// ---- 1 -> 1, small messages ------------------------------------------------------------------

// A child producer puts 1..n behind a start line; the parent gets them. The time runs from the
// start line to the parent having all n.
template <class Put, class Get>
bench::Seconds one_to_one_mproc(std::size_t n, Put put, Get get) {
    SharedObject<Gate> gate;
    const PinnedToTwoCpus pinned;
    auto producer = mproc::fork_context.Process([&] {
        pinned.pin_child();
        gate->wait();
        for (std::size_t i = 1; i <= n; ++i) put(static_cast<std::int64_t>(i));
    });
    producer.start();
    std::int64_t sum = 0;
    const auto start = std::chrono::steady_clock::now();
    gate->release();
    for (std::size_t i = 0; i < n; ++i) sum += get();
    const bench::Seconds took = std::chrono::steady_clock::now() - start;
    producer.join();
    bench::require(producer.exitcode() == 0, "the producer failed");
    bench::require(sum == sum_to(n), "messages lost");
    return took;
}

template <class Ring>
bench::Seconds raw_one_to_one(std::size_t n) {
    SharedObject<Ring> ring;
    SharedObject<Gate> gate;
    const PinnedToTwoCpus pinned;
    const pid_t pid = fork_child([&] {
        pinned.pin_child();
        gate->wait();
        for (std::size_t i = 1; i <= n; ++i) ring->push(static_cast<std::int64_t>(i));
    });
    std::int64_t sum = 0;
    const auto start = std::chrono::steady_clock::now();
    gate->release();
    for (std::size_t i = 0; i < n; ++i) sum += ring->pop();
    const bench::Seconds took = std::chrono::steady_clock::now() - start;
    reap(pid);
    bench::require(sum == sum_to(n), "messages lost");
    return took;
}

// A child writes n messages of `size` bytes (8 at least) into a pipe(2) behind a start line, each
// beginning with its number, 1..n; the parent reads them whole and adds the numbers up. The time
// runs from the start line to the parent having read all n.
bench::Seconds raw_pipe_stream(std::size_t n, std::size_t size, bool pin) {
    int fds[2];
    bench::require(::pipe(fds) == 0, "pipe failed");
    SharedObject<Gate> gate;
    std::optional<PinnedToTwoCpus> pinned;
    if (pin) pinned.emplace();
    const pid_t pid = fork_child([&] {
        if (pinned) pinned->pin_child();
        ::close(fds[0]);
        std::vector<char> message(size, 'x');
        gate->wait();
        for (std::size_t i = 1; i <= n; ++i) {
            const auto number = static_cast<std::int64_t>(i);
            std::memcpy(message.data(), &number, sizeof number);
            bench::ipc::write_exactly(fds[1], message.data(), message.size());
        }
    });
    ::close(fds[1]);
    std::vector<char> buffer(size);
    std::int64_t sum = 0;
    const auto start = std::chrono::steady_clock::now();
    gate->release();
    for (std::size_t i = 0; i < n; ++i) {
        bench::ipc::read_exactly(fds[0], buffer.data(), buffer.size());
        std::int64_t number;
        std::memcpy(&number, buffer.data(), sizeof number);
        sum += number;
    }
    const bench::Seconds took = std::chrono::steady_clock::now() - start;
    reap(pid);
    ::close(fds[0]);
    bench::require(sum == sum_to(n), "messages lost");
    return took;
}

const bench::Register throughput_small{{
    .name = "queue.throughput.small",
    .unit = bench::per_second("msg"),
    .description = "1 producer process -> 1 consumer process, put/get of 8-byte integers (Queue<long>), pinned to "
                   "two CPUs; raw: an SPSC ring of 8-byte slots in shared memory, spinning (pause, then sched_yield)",
    .impls = {
        {"mproc", [](std::size_t n) {
             mproc::Queue<long> queue;
             return one_to_one_mproc(n, [&](std::int64_t v) { queue.put(v); }, [&] { return queue.get(); });
         }},
        {"raw", raw_one_to_one<SpscRing>},
        {"raw.plain", raw_one_to_one<PlainSpscRing>},
    },
}, bench::LoadedTwin{
    .impls = {"mproc"},
    .own_impls = {{"raw", [](std::size_t n) { return raw_pipe_stream(n, sizeof(std::int64_t), true); }}},
    .description = "1 producer process -> 1 consumer process, put/get of 8-byte integers (Queue<long>), pinned to "
                   "two CPUs; raw: write/read of the same integers over a pipe(2), one system call each",
}};

// ---- 2 -> 2 ----------------------------------------------------------------------------------

// Two producers put 1..n between them, then -1 each; two consumers get until their first -1 (the
// -1 of each producer comes after all its messages, so when both consumers have stopped every
// message is taken) and add what they got to the totals. Four child processes; the parent opens
// the start line and sleeps until both consumers are done.
struct MpmcTotals {
    Gate gate;
    FinishLine consumers;
    std::atomic<std::int64_t> count{0};
    std::atomic<std::int64_t> sum{0};
};

template <class Start, class Put, class Get>
bench::Seconds two_to_two(std::size_t n, Start start_child, Put put, Get get) {
    SharedObject<MpmcTotals> totals;
    const std::size_t first_half = n / 2;
    auto produce = [&, first_half](bool first) {
        totals->gate.wait();
        const std::size_t from = first ? 1 : first_half + 1, to = first ? first_half : n;
        for (std::size_t i = from; i <= to; ++i) put(static_cast<std::int64_t>(i));
        put(-1);
    };
    auto consume = [&] {
        totals->gate.wait();
        std::int64_t count = 0, sum = 0;
        for (std::int64_t v; (v = get()) != -1;) {
            ++count;
            sum += v;
        }
        totals->count.fetch_add(count);
        totals->sum.fetch_add(sum);
        totals->consumers.cross();
    };
    auto children = {start_child([&] { produce(true); }), start_child([&] { produce(false); }), start_child(consume),
                     start_child(consume)};
    const auto start = std::chrono::steady_clock::now();
    totals->gate.release();
    totals->consumers.wait_for(2);
    const bench::Seconds took = std::chrono::steady_clock::now() - start;
    for (const auto& join : children) join();
    bench::require(totals->count.load() == static_cast<std::int64_t>(n) && totals->sum.load() == sum_to(n),
                   "messages lost");
    return took;
}

const bench::Register throughput_mpmc{{
    .name = "queue.throughput.mpmc",
    .unit = bench::per_second("msg"),
    .description = "2 producer processes -> 2 consumer processes, one Queue<long>, 8-byte integers (4 processes, "
                   "not pinned); raw: a bounded MPMC ring (Vyukov) of the same integers in shared memory, spinning",
    .impls = {
        {"mproc", [](std::size_t n) {
             mproc::Queue<long> queue;
             std::vector<mproc::Process> processes;
             processes.reserve(4);
             auto start_child = [&](auto body) {
                 processes.push_back(mproc::fork_context.Process(body));
                 processes.back().start();
                 mproc::Process* p = &processes.back();
                 return std::function<void()>([p] {
                     p->join();
                     bench::require(p->exitcode() == 0, "a child failed");
                 });
             };
             return two_to_two(n, start_child, [&](std::int64_t v) { queue.put(v); }, [&] { return queue.get(); });
         }},
        {"raw", [](std::size_t n) {
             SharedObject<MpmcRing> ring;
             auto start_child = [](auto body) {
                 const pid_t pid = fork_child(body);
                 return std::function<void()>([pid] { reap(pid); });
             };
             return two_to_two(n, start_child, [&](std::int64_t v) { ring->push(v); }, [&] { return ring->pop(); });
         }},
    },
}};

// ---- request/reply ---------------------------------------------------------------------------

bench::Seconds queue_pingpong(std::size_t iterations, bool pin) {
    mproc::Queue<long> requests, replies;
    std::optional<PinnedToTwoCpus> pinned;
    if (pin) pinned.emplace();
    auto child = mproc::fork_context.Process([&pinned, requests, replies, iterations]() mutable {
        if (pinned) pinned->pin_child();
        for (std::size_t i = 0; i < iterations; ++i) replies.put(requests.get() + 1);
    });
    child.start();
    long value = 0;
    const auto took = bench::time_loop(iterations, [&] {
        requests.put(value);
        const long reply = replies.get();
        bench::require(reply == value + 1, "wrong reply");
        value = reply;
    });
    child.join();
    bench::require(child.exitcode() == 0, "the child failed");
    return took;
}

const bench::Register pingpong{{
    .name = "queue.pingpong",
    .unit = bench::micros_per("round_trip"),
    .description = "two processes, two Queue<long>: put(request), get(reply) against put(get() + 1) (not pinned, as "
                   "event.pingpong); raw: the bare futex ping-pong of event.pingpong (FUTEX_WAIT / FUTEX_WAKE)",
    .impls = {
        {"mproc", [](std::size_t n) { return queue_pingpong(n, false); }},
        {"mproc.pinned", [](std::size_t n) { return queue_pingpong(n, true); }},
        {"raw", bench::ipc::raw_futex_pingpong},
        {"raw.pinned", [](std::size_t n) {
             const PinnedToTwoCpus pinned;
             // The child inherits the parent's CPU; it moves itself to the other one first.
             SharedObject<bench::ipc::PingPongWords> words;
             const pid_t pid = fork_child([&] {
                 pinned.pin_child();
                 for (std::size_t i = 0; i < n; ++i) {
                     bench::ipc::raw_wait_and_clear(words->ping);
                     bench::ipc::raw_set(words->pong);
                 }
             });
             const auto took = bench::time_loop(n, [&] {
                 bench::ipc::raw_set(words->ping);
                 bench::ipc::raw_wait_and_clear(words->pong);
             });
             reap(pid);
             return took;
         }},
    },
}};

// ---- 1 MiB messages --------------------------------------------------------------------------

// A child producer puts n messages of 1 MiB behind a start line; the parent gets them (a new
// vector each, as get() returns) and checks their sizes.
bench::BatchFn mproc_1mib(long maxsize, std::size_t buffer_size, bool pin = true) {
    return [maxsize, buffer_size, pin](std::size_t n) {
        mproc::Queue<std::vector<char>> queue(maxsize, mproc::QueueOptions{.buffer_size = buffer_size});
        SharedObject<Gate> gate;
        std::optional<PinnedToTwoCpus> pinned;
        if (pin) pinned.emplace();
        auto producer = mproc::fork_context.Process([&] {
            if (pinned) pinned->pin_child();
            const std::vector<char> message(kMebibyte, 'x');
            gate->wait();
            for (std::size_t i = 0; i < n; ++i) queue.put(message);
        });
        producer.start();
        std::size_t received = 0;
        const auto start = std::chrono::steady_clock::now();
        gate->release();
        for (std::size_t i = 0; i < n; ++i) received += queue.get().size();
        const bench::Seconds took = std::chrono::steady_clock::now() - start;
        producer.join();
        bench::require(producer.exitcode() == 0, "the producer failed");
        bench::require(received == n * kMebibyte, "bytes lost");
        return took;
    };
}

const bench::Register throughput_1mib{{
    .name = "queue.throughput.1mib",
    .unit = bench::megabytes_per_second(static_cast<double>(kMebibyte)),
    .description = "1 producer process -> 1 consumer process, put/get of 1 MiB std::vector<char> (Queue, default "
                   "options), pinned to two CPUs; raw: write/read of the same 1 MiB messages over a pipe(2)",
    .impls = {
        {"mproc", mproc_1mib(0, mproc::QueueOptions{}.buffer_size)},
        {"mproc.buffer8mib", mproc_1mib(0, 8 * kMebibyte)},
        {"mproc.bounded", mproc_1mib(2, mproc::QueueOptions{}.buffer_size)},
        {"mproc.unpinned", mproc_1mib(0, mproc::QueueOptions{}.buffer_size, false)},
        {"raw", [](std::size_t n) { return raw_pipe_stream(n, kMebibyte, true); }},
        {"raw.unpinned", [](std::size_t n) { return raw_pipe_stream(n, kMebibyte, false); }},
    },
}, bench::LoadedTwin{.impls = {"mproc", "raw"}}};

}  // namespace
