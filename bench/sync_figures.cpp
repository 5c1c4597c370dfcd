// Figures for the synchronization primitives and shared values, against the primitives they
// stand on: a process-shared robust pthread mutex (what mproc::Lock is) and a bare futex
// ping-pong (what an Event round trip costs at the least).
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <mutex>
#include <new>

#include "harness.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"

namespace {

// Anonymous shared memory for the raw side and for the start/finish handshakes of both sides.
template <class T>
class SharedObject {
public:
    SharedObject() {
        void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        bench::require(p != MAP_FAILED, "mmap failed");
        object_ = new (p) T{};
    }
    ~SharedObject() {
        object_->~T();
        ::munmap(object_, sizeof(T));
    }
    SharedObject(const SharedObject&) = delete;
    SharedObject& operator=(const SharedObject&) = delete;
    T* operator->() const { return object_; }
    T& operator*() const { return *object_; }

private:
    T* object_;
};

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, nullptr, nullptr, 0);
}
void futex_wake(std::atomic<std::uint32_t>& word) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// A start line both processes cross together, so that the timed part starts with both running.
struct Gate {
    std::atomic<std::uint32_t> open{0};
    void wait() {
        while (open.load(std::memory_order_acquire) == 0) futex_wait(open, 0);
    }
    void release() {
        open.store(1, std::memory_order_release);
        futex_wake(open);
    }
};

// A robust, process-shared pthread mutex: the raw primitive mproc::Lock is measured against.
struct RawMutex {
    pthread_mutex_t mutex;
    long counter = 0;
    RawMutex() {
        pthread_mutexattr_t attributes;
        ::pthread_mutexattr_init(&attributes);
        ::pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
        ::pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
        ::pthread_mutex_init(&mutex, &attributes);
        ::pthread_mutexattr_destroy(&attributes);
    }
    ~RawMutex() { ::pthread_mutex_destroy(&mutex); }
    void lock() { bench::require(::pthread_mutex_lock(&mutex) == 0, "pthread_mutex_lock failed"); }
    void unlock() { ::pthread_mutex_unlock(&mutex); }
};

void reap(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    bench::require(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed");
}

// "Contended" means both processes run at once. Left to itself the scheduler often puts the two
// on one CPU, where they take turns and hardly ever meet at the lock (the figure then approaches
// the uncontended rate, spec/anchors.md "Noise"); so the parent and the child are pinned to two
// different CPUs for the batch, for mproc, raw and Python alike.
class PinnedToTwoCpus {
public:
    PinnedToTwoCpus() {
        if (::sched_getaffinity(0, sizeof saved_, &saved_) != 0) return;
        for (int cpu = 0; cpu < CPU_SETSIZE && (parent_ < 0 || child_ < 0); ++cpu) {
            if (!CPU_ISSET(cpu, &saved_)) continue;
            (parent_ < 0 ? parent_ : child_) = cpu;
        }
        if (child_ >= 0) pin(parent_);
    }
    ~PinnedToTwoCpus() {
        if (child_ >= 0) ::sched_setaffinity(0, sizeof saved_, &saved_);
    }
    PinnedToTwoCpus(const PinnedToTwoCpus&) = delete;
    PinnedToTwoCpus& operator=(const PinnedToTwoCpus&) = delete;
    // In the child.
    void pin_child() const {
        if (child_ >= 0) pin(child_);
    }

private:
    static void pin(int cpu) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        ::sched_setaffinity(0, sizeof one, &one);
    }
    cpu_set_t saved_{};
    int parent_ = -1;
    int child_ = -1;
};

// Two processes, each doing half of `iterations` of `op`; the time from the start line until
// both are done.
template <class Op>
bench::Seconds two_processes_mproc(std::size_t iterations, Op op) {
    SharedObject<Gate> gate;
    const PinnedToTwoCpus pinned;
    const std::size_t half = iterations / 2;
    auto child = mproc::fork_context.Process([&gate, &op, &pinned, half] {
        pinned.pin_child();
        gate->wait();
        for (std::size_t i = 0; i < half; ++i) op();
    });
    child.start();
    const auto start = std::chrono::steady_clock::now();
    gate->release();
    for (std::size_t i = 0; i < iterations - half; ++i) op();
    child.join();
    bench::require(child.exitcode() == 0, "the child failed");
    return std::chrono::steady_clock::now() - start;
}

template <class Op>
bench::Seconds two_processes_raw(std::size_t iterations, Op op) {
    SharedObject<Gate> gate;
    const PinnedToTwoCpus pinned;
    const std::size_t half = iterations / 2;
    const pid_t pid = ::fork();
    bench::require(pid >= 0, "fork failed");
    if (pid == 0) {
        pinned.pin_child();
        gate->wait();
        for (std::size_t i = 0; i < half; ++i) op();
        ::_exit(0);
    }
    const auto start = std::chrono::steady_clock::now();
    gate->release();
    for (std::size_t i = 0; i < iterations - half; ++i) op();
    reap(pid);
    return std::chrono::steady_clock::now() - start;
}

const bench::Register lock_uncontended{{
    .name = "lock.uncontended",
    .unit = bench::nanos_per("op"),
    .description = "lock() + unlock() of an mproc::Lock, one process; raw: a robust process-shared pthread mutex",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             mproc::Lock lock;
             return bench::time_loop(iterations, [&] {
                 lock.lock();
                 lock.unlock();
             });
         }},
        {"raw", [](std::size_t iterations) {
             SharedObject<RawMutex> mutex;
             return bench::time_loop(iterations, [&] {
                 mutex->lock();
                 mutex->unlock();
             });
         }},
    },
}};

const bench::Register lock_contended{{
    .name = "lock.contended",
    .unit = bench::per_second("op"),
    .description = "2 processes, each: lock, ++counter, unlock (Lock + RawValue<long>); raw: a robust "
                   "process-shared pthread mutex and a long in shared memory",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             mproc::Lock lock;
             mproc::RawValue<long> counter(0);
             const auto took = two_processes_mproc(iterations, [&] {
                 lock.lock();
                 ++counter.value();
                 lock.unlock();
             });
             bench::require(counter.value() == static_cast<long>(iterations), "lost increments");
             return took;
         }},
        {"raw", [](std::size_t iterations) {
             SharedObject<RawMutex> mutex;
             const auto took = two_processes_raw(iterations, [&] {
                 mutex->lock();
                 ++mutex->counter;
                 mutex->unlock();
             });
             bench::require(mutex->counter == static_cast<long>(iterations), "lost increments");
             return took;
         }},
    },
}};

const bench::Register value_locked_increment{{
    .name = "value.locked_increment",
    .unit = bench::per_second("op"),
    .description = "2 processes, each: { std::scoped_lock g(v.get_lock()); v.value() += 1; } on a Value<long> "
                   "(its default RLock); raw: a robust process-shared pthread mutex and a long",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             mproc::Value<long> v(0);
             const auto took = two_processes_mproc(iterations, [&] {
                 std::scoped_lock guard(v.get_lock());
                 v.value() += 1;
             });
             bench::require(v.load() == static_cast<long>(iterations), "lost increments");
             return took;
         }},
        {"raw", [](std::size_t iterations) {
             SharedObject<RawMutex> mutex;
             const auto took = two_processes_raw(iterations, [&] {
                 std::scoped_lock guard(*mutex);
                 mutex->counter += 1;
             });
             bench::require(mutex->counter == static_cast<long>(iterations), "lost increments");
             return took;
         }},
    },
}};

// Raw: two futex words, each process wakes the other and sleeps on its own.
struct PingPongWords {
    std::atomic<std::uint32_t> ping{0};
    std::atomic<std::uint32_t> pong{0};
};

void raw_wait_and_clear(std::atomic<std::uint32_t>& word) {
    while (word.load(std::memory_order_acquire) == 0) futex_wait(word, 0);
    word.store(0, std::memory_order_relaxed);
}
void raw_set(std::atomic<std::uint32_t>& word) {
    word.store(1, std::memory_order_release);
    futex_wake(word);
}

const bench::Register event_pingpong{{
    .name = "event.pingpong",
    .unit = bench::micros_per("round_trip"),
    .description = "two processes, two Events: set(ping), wait(pong), clear(pong) against wait(ping), clear(ping), "
                   "set(pong); raw: the same with two bare futex words (FUTEX_WAIT / FUTEX_WAKE)",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             mproc::Event ping, pong;
             auto child = mproc::fork_context.Process([ping, pong, iterations]() mutable {
                 for (std::size_t i = 0; i < iterations; ++i) {
                     ping.wait();
                     ping.clear();
                     pong.set();
                 }
             });
             child.start();
             const auto took = bench::time_loop(iterations, [&] {
                 ping.set();
                 pong.wait();
                 pong.clear();
             });
             child.join();
             bench::require(child.exitcode() == 0, "the child failed");
             return took;
         }},
        {"raw", [](std::size_t iterations) {
             SharedObject<PingPongWords> words;
             const pid_t pid = ::fork();
             bench::require(pid >= 0, "fork failed");
             if (pid == 0) {
                 for (std::size_t i = 0; i < iterations; ++i) {
                     raw_wait_and_clear(words->ping);
                     raw_set(words->pong);
                 }
                 ::_exit(0);
             }
             const auto took = bench::time_loop(iterations, [&] {
                 raw_set(words->ping);
                 raw_wait_and_clear(words->pong);
             });
             reap(pid);
             return took;
         }},
    },
}};

}  // namespace
