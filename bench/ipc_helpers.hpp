#pragma once
// What the figures with two or more processes share (sync_figures.cpp, pipe_figures.cpp,
// queue_figures.cpp): anonymous shared memory for the raw side and for start/finish handshakes,
// bare futex calls, a start line, pinning to two CPUs, forking and reaping raw children, exact
// reads and writes on a file descriptor, and the bare futex ping-pong that every blocking round
// trip is compared with.
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <new>

#include "harness.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "base/spin.hpp"

namespace bench::ipc {

// An object in anonymous shared memory (MAP_SHARED | MAP_ANONYMOUS), so that a forked child and
// its parent see the same one. `size` bytes at least are mapped (for a T followed by an array).
template <class T>
class SharedObject {
public:
    explicit SharedObject(std::size_t size = sizeof(T)) : size_(size < sizeof(T) ? sizeof(T) : size) {
        void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        bench::require(p != MAP_FAILED, "mmap failed");
        object_ = new (p) T{};
    }
    ~SharedObject() {
        object_->~T();
        ::munmap(object_, size_);
    }
    SharedObject(const SharedObject&) = delete;
    SharedObject& operator=(const SharedObject&) = delete;
    T* operator->() const { return object_; }
    T& operator*() const { return *object_; }
    T* get() const { return object_; }

private:
    std::size_t size_;
    T* object_;
};

inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, nullptr, nullptr, 0);
}
inline void futex_wake(std::atomic<std::uint32_t>& word) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// The pause instruction mproc's own spins use (src/sync/spin.hpp).
using mproc::detail::cpu_relax;

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

// A count of processes that finished, which the parent sleeps on until it reaches a number.
struct FinishLine {
    std::atomic<std::uint32_t> finished{0};
    void cross() {
        finished.fetch_add(1, std::memory_order_acq_rel);
        futex_wake(finished);
    }
    void wait_for(std::uint32_t count) {
        for (std::uint32_t now; (now = finished.load(std::memory_order_acquire)) < count;) futex_wait(finished, now);
    }
};

inline void reap(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    bench::require(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed");
}

// fork, run `child` in the child, _exit(0); returns the pid.
template <class Child>
pid_t fork_child(Child child) {
    const pid_t pid = ::fork();
    bench::require(pid >= 0, "fork failed");
    if (pid == 0) {
        child();
        ::_exit(0);
    }
    return pid;
}

inline void write_exactly(int fd, const void* data, std::size_t size) {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        bench::require(n > 0, "write failed");
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

inline void read_exactly(int fd, void* data, std::size_t size) {
    auto* p = static_cast<char*>(data);
    while (size > 0) {
        const ssize_t n = ::read(fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        bench::require(n > 0, "read failed or end of file");
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

// Left to itself the scheduler often puts two communicating processes on one CPU, where they take
// turns (spec/anchors.md "Noise"); figures that are about two processes running at once pin the
// parent and the child to two different CPUs for the batch, for mproc, raw and Python alike.
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

// Two processes, each doing half of `iterations` of `op`, pinned to two CPUs; the time from the
// start line until both are done.
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
    const pid_t pid = fork_child([&] {
        pinned.pin_child();
        gate->wait();
        for (std::size_t i = 0; i < half; ++i) op();
    });
    const auto start = std::chrono::steady_clock::now();
    gate->release();
    for (std::size_t i = 0; i < iterations - half; ++i) op();
    reap(pid);
    return std::chrono::steady_clock::now() - start;
}

// The bare futex ping-pong: two words, each process wakes the other and sleeps on its own. The
// least a blocking round trip between two processes costs.
struct PingPongWords {
    std::atomic<std::uint32_t> ping{0};
    std::atomic<std::uint32_t> pong{0};
};

inline void raw_wait_and_clear(std::atomic<std::uint32_t>& word) {
    while (word.load(std::memory_order_acquire) == 0) futex_wait(word, 0);
    word.store(0, std::memory_order_relaxed);
}
inline void raw_set(std::atomic<std::uint32_t>& word) {
    word.store(1, std::memory_order_release);
    futex_wake(word);
}

// `iterations` round trips: the parent sets ping and waits for pong, a forked child the reverse;
// the child is started before the timed part (one untimed round trip says it runs) and reaped
// after it.
inline bench::Seconds raw_futex_pingpong(std::size_t iterations) {
    SharedObject<PingPongWords> words;
    const pid_t pid = fork_child([&] {
        for (std::size_t i = 0; i <= iterations; ++i) {
            raw_wait_and_clear(words->ping);
            raw_set(words->pong);
        }
    });
    const auto round_trip = [&] {
        raw_set(words->ping);
        raw_wait_and_clear(words->pong);
    };
    round_trip();
    const auto took = bench::time_loop(iterations, round_trip);
    reap(pid);
    return took;
}

}  // namespace bench::ipc
