#pragma once
// Spinning before sleeping, for waits whose answer usually comes from a process running on another
// CPU (a queue's next message, a manager's reply). Waking a process that sleeps on another CPU
// costs tens of microseconds on a virtual machine; a spin that sees the answer arrive costs well
// under one. But a spin only pays while the other side runs on a CPU of its own. The discipline:
//
//  - Spin only while the machine has a CPU for each runnable task. A spinner that shares its CPU
//    with a busy process gives it the CPU when it yields and gets it back only when that process's
//    time slice ends (milliseconds), while a waiter asleep in the kernel is run at once when it is
//    woken. So every spin first asks machine_oversubscribed() (more runnable tasks than CPUs, as
//    the kernel counts them in /proc/loadavg, sampled at most every kLoadSampleNanos by whoever
//    asks), and waits in the kernel at once when it says yes.
//  - A yield that comes back late (kContendedYieldNanos) is the same news, first hand: another
//    task ran on this CPU meanwhile. The spin ends, and the machine counts as oversubscribed until
//    the next sample.
//  - The budget adapts per waiter (SpinBudget): back to the maximum when a spin ends with what it
//    waited for, halved when it ends in sleep; below the minimum the waiter sleeps at once, but
//    one wait in 32 spins in full, so that the budget recovers when spinning pays again.
//  - A caller that knows the other side is not running (it sleeps in the kernel waiting for this
//    side) does not spin at all: that is the caller's knowledge, not this header's.
//  - The spin yields the CPU every other look, for the case where the other side shares this CPU
//    and is the only other task there: that is what lets it answer.
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#include "base/deadline.hpp"

namespace mproc::detail {

// How long a waiter spins before it sleeps, at most: a little more than a wake-up from sleep takes
// on another CPU, so that an answer from a process that is running (or being woken) arrives
// during the spin.
inline constexpr std::int32_t kMaxSpinNanos = 50'000;
inline constexpr std::int32_t kMinSpinNanos = 2'000;
// Pause instructions between two looks of a spinning waiter, at most (about a microsecond).
inline constexpr unsigned kMaxSpinPauses = 128;
// How often the machine's load is sampled, at most; and how long a yield may take before it
// counts as proof that another task wanted this CPU (an empty yield is a system call of about a
// microsecond; a peer that shares the CPU and answers takes a few).
inline constexpr std::int64_t kLoadSampleNanos = 10'000'000;
inline constexpr std::int64_t kContendedYieldNanos = 20'000;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

// True when more tasks are runnable than the machine has CPUs (or a yield came back late since the
// last sample): a spinner would take a CPU from a task that has work. Cheap: a clock read, and a
// read of /proc/loadavg once per kLoadSampleNanos in the whole process.
bool machine_oversubscribed() noexcept;
// What a spinner says when its yield came back late: oversubscribed until the next sample.
void note_contended_yield() noexcept;

// Whether a waiter should spin at all now: not on a single CPU, not on an oversubscribed machine.
inline bool spinning_pays() noexcept {
    static const bool several_cpus = ::sysconf(_SC_NPROCESSORS_ONLN) > 1;
    return several_cpus && !machine_oversubscribed();
}

// A spin budget (one per queue and process, one per manager connection).
class SpinBudget {
public:
    SpinBudget() = default;
    // Copies (and moves) carry the budget over: the owner of a connection may be moved.
    SpinBudget(const SpinBudget& other) noexcept
        : nanos_(other.nanos_.load(std::memory_order_relaxed)), probe_(other.probe_.load(std::memory_order_relaxed)) {}
    SpinBudget& operator=(const SpinBudget& other) noexcept {
        nanos_.store(other.nanos_.load(std::memory_order_relaxed), std::memory_order_relaxed);
        probe_.store(other.probe_.load(std::memory_order_relaxed), std::memory_order_relaxed);
        return *this;
    }

    std::int32_t next() noexcept {
        const std::int32_t ns = nanos_.load(std::memory_order_relaxed);
        if (ns >= kMinSpinNanos) return ns;
        return (probe_.fetch_add(1, std::memory_order_relaxed) & 31) == 0 ? kMaxSpinNanos : 0;
    }
    void record(bool succeeded) noexcept {
        nanos_.store(succeeded ? kMaxSpinNanos : nanos_.load(std::memory_order_relaxed) / 2, std::memory_order_relaxed);
    }

private:
    std::atomic<std::int32_t> nanos_{kMaxSpinNanos};
    std::atomic<std::uint32_t> probe_{0};
};

// Spins until ready() or the budget is spent; false at once on a single CPU or an oversubscribed
// machine (the discipline above). The spin yields the CPU now and then: when the process it waits
// for shares this CPU, that is what lets it answer.
template <class Ready>
bool spin_until(SpinBudget& budget, unsigned first_pauses, Ready ready) {
    if (!spinning_pays()) return false;
    const std::int32_t nanos = budget.next();
    if (nanos == 0) return false;
    const Deadline spent = Deadline::after(std::chrono::nanoseconds(nanos));
    // Looks less and less often (up to every 128 pauses, about a microsecond): a look at shared
    // memory takes its cache line away from a writer that is still busy, and a writer left alone
    // for a while publishes several messages for the price of one transfer.
    unsigned pauses = first_pauses;
    bool yield_was_late = false;
    for (unsigned looks = 1;; ++looks) {
        for (unsigned i = 0; i < pauses; ++i) cpu_relax();
        if (ready()) {
            budget.record(true);
            return true;
        }
        if (yield_was_late) {
            note_contended_yield();
            budget.record(false);
            return false;
        }
        if (pauses < kMaxSpinPauses) pauses *= 2;
        // Every other look: often enough that a process sharing this CPU answers within a few
        // looks; a yield with nothing else to run costs a system call and nothing more.
        if ((looks & 1) == 0) {
            if (spent.passed()) {
                budget.record(false);
                return false;
            }
            const auto before = std::chrono::steady_clock::now();
            ::sched_yield();
            yield_was_late = std::chrono::steady_clock::now() - before > std::chrono::nanoseconds(kContendedYieldNanos);
        }
    }
}

}  // namespace mproc::detail
