// Lock and RLock over a robust process-shared pthread mutex (base/mutex_state.hpp), and the hold
// that an OwnerDiedError carries.
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "mproc/errors.hpp"
#include "base/lifecycle.hpp"
#include "mproc/synchronize.hpp"
#include "base/futex.hpp"
#include "sync/mutex_block.hpp"

namespace mproc::detail {

// The hold of a lock that an OwnerDiedError carries (errors.hpp).
class HeldLock {
public:
    HeldLock(SharedBlock block, pid_t thread) noexcept : block_(std::move(block)), thread_(thread) {}
    HeldLock(const HeldLock&) = delete;
    HeldLock& operator=(const HeldLock&) = delete;
    ~HeldLock() { release_if_held(); }

    bool armed() const noexcept { return armed_.load(std::memory_order_relaxed); }
    void disarm() noexcept { armed_.store(false, std::memory_order_relaxed); }
    const SharedBlock& block() const noexcept { return block_; }
    pid_t thread() const noexcept { return thread_; }

    // Releases the lock if this hold still has it and the caller is the thread that acquired.
    bool release_if_held() noexcept;

private:
    SharedBlock block_;
    pid_t thread_;
    std::atomic<bool> armed_{true};
};

namespace {

// The holds of this thread that an exception still owns, so that a release by hand ends them
// (and the exception does not release a second time). Counted separately so that the unlock
// path pays one thread-local load when there are none, which is always but after an owner died.
thread_local int armed_holds = 0;
thread_local std::vector<std::weak_ptr<HeldLock>> armed_list;

void arm(const std::shared_ptr<HeldLock>& held) {
    armed_list.push_back(held);
    ++armed_holds;
}

// The lock at `state` is being released by hand: the exception that held it no longer does.
void disarm_holds_of(const MutexState* state) noexcept {
    auto& list = armed_list;
    for (auto it = list.begin(); it != list.end();) {
        auto held = it->lock();
        if (!held || held->block().as<MutexState>() == state) {
            if (held) held->disarm();
            it = list.erase(it);
        } else {
            ++it;
        }
    }
    armed_holds = static_cast<int>(list.size());
}

const char* kind_name(const MutexState& state) { return state.recursive ? "RLock" : "Lock"; }

// The caller has just taken a lock whose owner died (EOWNERDEAD, already made consistent; an
// RLock has one level).
[[noreturn]] void throw_owner_died(const SharedBlock& block, MutexState& state) {
    auto held = std::make_shared<HeldLock>(block, current_thread_id());
    arm(held);
    throw OwnerDiedError(std::string("the previous owner of this ") + kind_name(state) +
                             " died while holding it; the data it protects may be inconsistent (the lock is "
                             "held by the caller until this exception is destroyed)",
                         std::move(held));
}

[[noreturn]] void throw_lock_error(const char* what, int rc) { throw OSError(what, rc); }

// Releases one level (RLock) or the lock. Throws UsageError for a release the caller may not do.
void release(MutexState& state) {
    // A release by hand of the last level ends an exception's hold on the lock (the exception
    // must not release it again).
    if (armed_holds != 0) [[unlikely]] {
        if (mutex_owned_by_caller(state) && (!state.recursive || mutex_levels(state) == 1)) disarm_holds_of(&state);
    }
    const int rc = ::pthread_mutex_unlock(&state.mutex);
    if (rc == 0) [[likely]]
        return;
    if (rc == EPERM) {
        if (state.recursive) throw UsageError("attempt to release recursive lock not owned by thread");
        if (mutex_owner(state) == 0) throw UsageError("semaphore or lock released too many times");
        throw UsageError("cannot release a Lock that another thread or process holds (a Lock is released by the "
                         "thread that acquired it)");
    }
    throw_lock_error("releasing a lock", rc);
}

}  // namespace

bool HeldLock::release_if_held() noexcept {
    if (!armed() || current_thread_id() != thread_) return false;
    disarm();
    try {
        release(*block_.as<MutexState>());
    } catch (...) {
        return false;  // not held any more: nothing to give back
    }
    return true;
}

MutexState* mutex_state(const SharedBlock& block) {
    if (!block) [[unlikely]]
        throw_moved_from("this lock");
    return block.as<MutexState>();
}

int raw_mutex_acquire(MutexState& state, std::int64_t timeout) noexcept {
    int rc;
    if (timeout == kForever) {
        rc = ::pthread_mutex_lock(&state.mutex);
    } else if (timeout == 0) {
        rc = ::pthread_mutex_trylock(&state.mutex);
        if (rc == EBUSY) rc = ETIMEDOUT;
    } else {
        const Deadline deadline = Deadline::after(std::chrono::nanoseconds(timeout));
        rc = ::pthread_mutex_clocklock(&state.mutex, CLOCK_MONOTONIC, deadline.when());
    }
    if (rc == EOWNERDEAD) {
        // Consistent at once: the one acquirer told of the death holds the lock, and the next
        // acquisition after its release is an ordinary one (no ENOTRECOVERABLE state).
        ::pthread_mutex_consistent(&state.mutex);
    }
    return rc;
}

void mutex_init(MutexState* state, bool recursive) {
    pthread_mutexattr_t attributes;
    ::pthread_mutexattr_init(&attributes);
    ::pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    ::pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    ::pthread_mutexattr_settype(&attributes, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_NORMAL);
    const int rc = ::pthread_mutex_init(&state->mutex, &attributes);
    ::pthread_mutexattr_destroy(&attributes);
    if (rc != 0) throw_lock_error("creating a lock", rc);
    state->recursive = recursive ? 1 : 0;
}

SharedBlock mutex_create(bool recursive) {
    SharedBlock block = allocate_shared_block(BlockKind::mutex, sizeof(MutexState), alignof(MutexState));
    mutex_init(new (block.payload()) MutexState{}, recursive);
    return block;
}

void mutex_check(const SharedBlock& block, bool recursive) {
    if (mutex_state(block)->recursive != (recursive ? 1U : 0U))
        throw DecodeError(std::string("shared memory: expected ") + (recursive ? "an RLock" : "a Lock") +
                          ", received " + (recursive ? "a Lock" : "an RLock"));
}

bool mutex_is_recursive(const SharedBlock& block) { return mutex_state(block)->recursive != 0; }

void mutex_lock(const SharedBlock& block) {
    MutexState& state = *mutex_state(block);
    const int rc = ::pthread_mutex_lock(&state.mutex);
    if (rc == 0) [[likely]]
        return;
    if (rc == EOWNERDEAD) {
        ::pthread_mutex_consistent(&state.mutex);
        throw_owner_died(block, state);
    }
    throw_lock_error("acquiring a lock", rc);
}

bool mutex_acquire(const SharedBlock& block, std::int64_t timeout) {
    MutexState& state = *mutex_state(block);
    const int rc = raw_mutex_acquire(state, timeout);
    if (rc == 0) [[likely]]
        return true;
    if (rc == ETIMEDOUT) return false;
    if (rc == EOWNERDEAD) throw_owner_died(block, state);
    throw_lock_error("acquiring a lock", rc);
}

void mutex_unlock(const SharedBlock& block) { release(*mutex_state(block)); }

bool mutex_locked(const SharedBlock& block) { return mutex_owner(*mutex_state(block)) != 0; }

std::string mutex_repr(const SharedBlock& block) {
    const MutexState& state = *mutex_state(block);
    const pid_t owner = mutex_owner(state);
    std::string name;
    bool mine = false;
    if (owner == 0) {
        name = "None";
    } else if (owner == current_thread_id()) {
        mine = true;
        name = current_process_name();
        if (owner != ::getpid()) name += "|" + std::to_string(owner);
    } else if (is_thread_of_this_process(owner)) {
        name = "SomeOtherThread";
    } else {
        name = "SomeOtherProcess";
    }
    if (!state.recursive) return "<Lock(owner=" + name + ")>";
    std::string count = owner == 0 ? "0" : mine ? std::to_string(mutex_levels(state)) : "nonzero";
    return "<RLock(" + name + ", " + count + ")>";
}

}  // namespace mproc::detail

namespace mproc {

OwnerDiedError::OwnerDiedError(const std::string& what, std::shared_ptr<detail::HeldLock> held)
    : ProcessError(what), held_(std::move(held)) {}

bool OwnerDiedError::holds_lock() const noexcept { return held_ && held_->armed(); }

void OwnerDiedError::release() const {
    if (!holds_lock()) return;
    if (detail::current_thread_id() != held_->thread())
        throw UsageError("an OwnerDiedError's lock can only be released by the thread that acquired it");
    held_->release_if_held();
}

void OwnerDiedError::keep_lock() const noexcept {
    if (!held_ || !held_->armed()) return;
    held_->disarm();
    if (detail::current_thread_id() == held_->thread()) detail::disarm_holds_of(held_->block().as<detail::MutexState>());
}

}  // namespace mproc
