// membarrier(2)-based asymmetric fences (asymmetric_fence.hpp).
#include "base/asymmetric_fence.hpp"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mproc::detail {

namespace {

int membarrier(int command) noexcept { return static_cast<int>(::syscall(SYS_membarrier, command, 0, 0)); }

// Whether MEMBARRIER_CMD_GLOBAL_EXPEDITED works on this system: decided once per process.
bool heavy_available() noexcept {
    static const bool available = [] {
        const int commands = membarrier(MEMBARRIER_CMD_QUERY);
        return commands > 0 && (commands & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0 &&
               (commands & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0;
    }();
    return available;
}

}  // namespace

std::atomic<std::uint64_t> asymmetric_fence_generation{~std::uint64_t{0}};

bool asymmetric_fence_register() noexcept {
    const std::uint64_t now = fork_generation();
    if (asymmetric_fence_generation.load(std::memory_order_acquire) == now) return true;
    if (!heavy_available() || membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) return false;
    asymmetric_fence_generation.store(now, std::memory_order_release);
    return true;
}

bool asymmetric_fence_heavy() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return heavy_available() && membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

}  // namespace mproc::detail
