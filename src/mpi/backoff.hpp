#pragma once
// How long a polling loop of the mpi floor waits before it looks at MPI again. MPI gives no
// descriptor to sleep on for "a message arrived", so rank 0's dispatcher and the serving ranks
// poll; they must neither add latency while work flows nor burn a core while none does. After
// activity the loop polls at once (yielding the CPU between polls) for a while, the spin window,
// which the caller sets to what it expects: the next message soon while work flows (a round trip
// is tens of microseconds, and a sleep costs at least the kernel's timer slack, 50 us), nothing
// when idle. Past the window it sleeps for a time that grows with the idleness, up to kMaxSleep:
// an idle rank wakes about a thousand times a second, a few microseconds of CPU each. Local work
// (a submitted task, a finished result) wakes a sleeping loop at once through its condition
// variable.
#include <algorithm>
#include <chrono>
#include <thread>

namespace mproc::mpi::detail {

class IdleBackoff {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr std::chrono::microseconds kMaxSleep{4000};

    void active() noexcept { last_active_ = Clock::now(); }

    // Between two polls of the spin window: the CPU is given up only every kPollsPerYield polls.
    // A yield that hands the CPU to another poller costs a context switch (several microseconds,
    // more under a hypervisor), which is as much as a message's whole trip.
    void between_polls() noexcept {
        if (++polls_ % kPollsPerYield == 0) std::this_thread::yield();
    }

    // Zero: poll again now (after a yield). Otherwise sleep this long (or until woken).
    std::chrono::microseconds next_wait(std::chrono::microseconds spin_window) const noexcept {
        const auto idle = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - last_active_);
        if (idle < spin_window) return std::chrono::microseconds::zero();
        return std::clamp((idle - spin_window) / 4, std::chrono::microseconds(10), kMaxSleep);
    }

private:
    static constexpr unsigned kPollsPerYield = 32;
    Clock::time_point last_active_ = Clock::now();
    unsigned polls_ = 0;
};

}  // namespace mproc::mpi::detail
