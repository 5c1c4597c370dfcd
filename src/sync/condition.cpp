// Condition: a sequence number that notify() bumps and waiters sleep on, next to a Lock or RLock.
//
// Why not a process-shared pthread_cond_t: glibc's condition variable makes a signaller wait for
// the waiters of the previous group to leave, and a waiter that was killed never leaves, so
// notify could hang forever. Here nobody ever waits for anybody: notify bumps the number and
// wakes sleepers; a waiter that died is simply not among them. The price is spurious wake-ups.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <new>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/synchronize.hpp"
#include "base/futex.hpp"
#include "sync/mutex_block.hpp"

namespace mproc::detail {
namespace {

struct ConditionState {
    std::atomic<std::uint32_t> sequence;  // bumped by every notify that finds waiters
    std::atomic<std::uint32_t> waiters;   // waiting now (a waiter killed while waiting stays counted)
};

ConditionState* state_of(const SharedBlock& block) {
    if (!block) [[unlikely]]
        throw_moved_from("this Condition");
    return block.as<ConditionState>();
}

}  // namespace

SharedBlock condition_create() {
    SharedBlock block = allocate_shared_block(BlockKind::condition, sizeof(ConditionState), alignof(ConditionState));
    new (block.payload()) ConditionState{};
    return block;
}

bool condition_wait(const SharedBlock& condition, const SharedBlock& lock, std::int64_t timeout) {
    ConditionState& c = *state_of(condition);
    MutexState& m = *mutex_state(lock);
    if (!mutex_owned_by_caller(m)) throw UsageError("must acquire() condition before using wait()");
    const Deadline deadline = Deadline::from_ns(timeout);

    // Read under the lock: a notify, which also holds the lock, comes after and changes it, so the
    // futex wait below cannot miss it.
    const std::uint32_t sequence = c.sequence.load(std::memory_order_acquire);
    c.waiters.fetch_add(1, std::memory_order_relaxed);
    const unsigned levels = m.recursive ? mutex_levels(m) : 1;
    for (unsigned i = 0; i < levels; ++i) ::pthread_mutex_unlock(&m.mutex);

    bool notified = false;
    for (;;) {
        const int rc = futex_wait(&c.sequence, sequence, deadline);
        if (c.sequence.load(std::memory_order_acquire) != sequence) {
            notified = true;
            break;
        }
        if (rc == ETIMEDOUT) break;
        // Woken with no notify since (EINTR, or the kernel's own spurious wake-ups): the same
        // deadline, again.
    }
    c.waiters.fetch_sub(1, std::memory_order_relaxed);

    const int rc = raw_mutex_acquire(m, kForever);
    if (rc == 0 || rc == EOWNERDEAD) {
        // The other levels: the owner takes a recursive mutex again without waiting.
        for (unsigned i = 1; i < levels; ++i) ::pthread_mutex_lock(&m.mutex);
    }
    if (rc == EOWNERDEAD)
        throw OwnerDiedError("the previous owner of this Condition's lock died while holding it; the data it protects "
                             "may be inconsistent (the lock is held, as before the wait)",
                             nullptr);
    if (rc != 0) throw OSError("re-acquiring a Condition's lock", rc);
    return notified;
}

void condition_notify(const SharedBlock& condition, const SharedBlock& lock, int count) {
    ConditionState& c = *state_of(condition);
    if (!mutex_owned_by_caller(*mutex_state(lock))) throw UsageError("lock is not owned");
    if (count <= 0 || c.waiters.load(std::memory_order_relaxed) == 0) return;
    c.sequence.fetch_add(1, std::memory_order_release);
    futex_wake(&c.sequence, count);
}

std::string condition_repr(const SharedBlock& condition, const SharedBlock& lock) {
    return "<Condition(" + mutex_repr(lock) + ", " +
           std::to_string(state_of(condition)->waiters.load(std::memory_order_relaxed)) + ")>";
}

}  // namespace mproc::detail
