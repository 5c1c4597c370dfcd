#pragma once
// The shared state of a Lock or an RLock, and the operations other primitives (Condition,
// Barrier) build on.
//
// The lock is a process-shared robust pthread mutex (PTHREAD_MUTEX_ROBUST): glibc keeps every
// robust mutex a thread holds on that thread's robust list, and the kernel walks the list when
// the thread ends (killed, exited, exec'd), marks each held mutex FUTEX_OWNER_DIED and wakes one
// waiter, whose lock call then returns EOWNERDEAD. A stopped process ends nothing, so its locks
// stay held. A Lock's mutex is of the normal kind, an RLock's of the recursive kind (glibc counts
// the levels, so that an RLock costs what a Lock does).
#include <linux/futex.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>

#include "base/identity.hpp"

namespace mproc::detail {

struct MutexState {
    pthread_mutex_t mutex;
    std::uint32_t recursive;  // 1 for an RLock; fixed at creation
    std::uint32_t reserved;
};

// Makes `state` (zero-filled shared memory) a robust process-shared mutex. OSError on failure.
void mutex_init(MutexState* state, bool recursive);

// The owner's thread id, from the mutex word that glibc and the kernel maintain (0: unlocked, or
// its owner died and nobody has recovered it yet).
inline pid_t mutex_owner(const MutexState& state) noexcept {
    const auto word = std::atomic_ref<int>(const_cast<int&>(state.mutex.__data.__lock)).load(std::memory_order_relaxed);
    return static_cast<pid_t>(static_cast<unsigned>(word) & FUTEX_TID_MASK);
}

inline bool mutex_owned_by_caller(const MutexState& state) noexcept {
    return mutex_owner(state) == current_thread_id();
}

// The levels an RLock's owner holds (glibc's count; meaningful to the owner only).
inline unsigned mutex_levels(const MutexState& state) noexcept {
    return std::atomic_ref<unsigned>(const_cast<unsigned&>(state.mutex.__data.__count)).load(std::memory_order_relaxed);
}

// Takes the pthread mutex (blocking, or until `deadline`): 0, ETIMEDOUT/EBUSY, or EOWNERDEAD after
// making the mutex consistent again (the caller then holds it).
int raw_mutex_acquire(MutexState& state, std::int64_t timeout) noexcept;

}  // namespace mproc::detail
