#pragma once
// MutexStateGuard: the one scope guard for the robust process-shared mutexes (MutexState) that
// mproc's shared structures hold, as std::unique_lock is for a C++ mutex. Where the lock is a C++
// mutex type, mproc uses std::lock_guard or std::unique_lock instead.
//
// Acquiring a MutexState has outcomes a C++ lock does not (a timeout, EOWNERDEAD after which the
// caller repairs what the dead owner left), so each caller acquires with raw_mutex_acquire, handles
// the outcome, and then hands the held mutex to a guard (std::adopt_lock), whose destructor
// releases it. A guard can let go early (unlock) and take a mutex that the caller acquired again
// (adopt), for loops that release the lock while they wait. Inline, no allocation, no system call
// beyond the unlock itself.
#include <pthread.h>

#include <mutex>
#include <utility>

#include "base/mutex_state.hpp"

namespace mproc::detail {

class MutexStateGuard {
public:
    MutexStateGuard() noexcept = default;
    // Takes over `state`, which the calling thread holds.
    MutexStateGuard(MutexState& state, std::adopt_lock_t) noexcept : state_(&state) {}
    MutexStateGuard(MutexStateGuard&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
    MutexStateGuard& operator=(MutexStateGuard&& other) noexcept {
        if (this != &other) {
            unlock();
            state_ = std::exchange(other.state_, nullptr);
        }
        return *this;
    }
    MutexStateGuard(const MutexStateGuard&) = delete;
    MutexStateGuard& operator=(const MutexStateGuard&) = delete;
    ~MutexStateGuard() { unlock(); }

    // Releases the mutex now (if this guard holds one).
    void unlock() noexcept {
        if (state_ != nullptr) ::pthread_mutex_unlock(&std::exchange(state_, nullptr)->mutex);
    }
    // Takes over `state` again (or another), which the calling thread holds; releases the one held.
    void adopt(MutexState& state) noexcept {
        unlock();
        state_ = &state;
    }
    bool owns_lock() const noexcept { return state_ != nullptr; }

private:
    MutexState* state_ = nullptr;
};

}  // namespace mproc::detail
