#pragma once
// Asymmetric fences between processes, for store-then-load handshakes where one side runs often
// and the other rarely: a producer that publishes a message and then looks whether a consumer
// sleeps, against a consumer that announces it will sleep and then looks for a message. Each
// side must see the other's store (or both), which takes a full fence on each side — unless the
// rare side makes the frequent side fence: membarrier(2)'s MEMBARRIER_CMD_GLOBAL_EXPEDITED runs a
// full barrier on every running thread of every process registered for it. The frequent side
// then pays only a compiler barrier (light), the rare side a system call (heavy).
//
// Both sides' processes must be registered; light() registers its process on first use (and
// again in a forked child, whose registration is not relied upon). A process that cannot
// register (an old kernel, a seccomp filter) uses full fences on its light side. When heavy()
// cannot make the others fence, it says so, and the caller must not sleep without a timeout.
#include <atomic>
#include <cstdint>

#include "base/lifecycle.hpp"

namespace mproc::detail {


// Registers this process (once per fork generation); true when light() may be a compiler barrier.
bool asymmetric_fence_register() noexcept;

extern std::atomic<std::uint64_t> asymmetric_fence_generation;  // the generation registered, or ~0

inline void asymmetric_fence_light() noexcept {
    if (asymmetric_fence_generation.load(std::memory_order_relaxed) == fork_generation()) [[likely]] {
        std::atomic_signal_fence(std::memory_order_seq_cst);
    } else if (asymmetric_fence_register()) {
        std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
        std::atomic_thread_fence(std::memory_order_seq_cst);
    }
}

// A full fence here and on every registered process's running threads. False when only this
// thread could be fenced: the other side may then miss this side's store.
bool asymmetric_fence_heavy() noexcept;

}  // namespace mproc::detail
