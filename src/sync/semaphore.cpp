// Semaphore and BoundedSemaphore: a futex word that is the count.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <new>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/synchronize.hpp"
#include "base/futex.hpp"

namespace mproc::detail {
namespace {

struct SemaphoreState {
    std::atomic<std::uint32_t> value;    // the count, and the futex word waiters sleep on while 0
    std::atomic<std::uint32_t> waiters;  // sleepers, so that release() skips the wake-up when none
    std::uint32_t maxvalue;              // BoundedSemaphore's bound; 0 for a Semaphore
    std::uint32_t reserved;
};

// A waiter that is woken and then killed before it takes the unit it was woken for takes the
// wake-up with it; sleeping in slices bounds how long the unit can go unnoticed.
constexpr std::chrono::milliseconds kRecheckEvery{200};

SemaphoreState* state_of(const SharedBlock& block) {
    if (!block) [[unlikely]]
        throw_moved_from("this semaphore");
    return block.as<SemaphoreState>();
}

bool try_take(SemaphoreState& s) noexcept {
    std::uint32_t v = s.value.load(std::memory_order_relaxed);
    while (v > 0) {
        if (s.value.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
    }
    return false;
}

}  // namespace

SharedBlock semaphore_create(int value, int maxvalue) {
    if (value < 0) throw UsageError("semaphore initial value must be >= 0");
    SharedBlock block = allocate_shared_block(BlockKind::semaphore, sizeof(SemaphoreState), alignof(SemaphoreState));
    auto* s = new (block.payload()) SemaphoreState{};
    s->value.store(static_cast<std::uint32_t>(value), std::memory_order_relaxed);
    s->maxvalue = static_cast<std::uint32_t>(maxvalue);
    return block;
}

void semaphore_check(const SharedBlock& block, bool bounded) {
    if (bounded && state_of(block)->maxvalue == 0)
        throw DecodeError("shared memory: expected a BoundedSemaphore, received a Semaphore");
}

bool semaphore_acquire(const SharedBlock& block, std::int64_t timeout) {
    SemaphoreState& s = *state_of(block);
    if (try_take(s)) return true;
    if (timeout == 0) return false;
    const Deadline deadline = Deadline::from_ns(timeout);
    for (;;) {
        // Registered as a sleeper before looking at the count once more (inside futex_wait): a
        // release() either sees the sleeper and wakes it, or its increment is seen here.
        s.waiters.fetch_add(1, std::memory_order_seq_cst);
        const int rc = futex_wait(&s.value, 0, deadline.capped(kRecheckEvery));
        s.waiters.fetch_sub(1, std::memory_order_relaxed);
        if (try_take(s)) return true;
        if (rc == ETIMEDOUT && deadline.passed()) return false;
    }
}

void semaphore_release(const SharedBlock& block) {
    SemaphoreState& s = *state_of(block);
    std::uint32_t v = s.value.load(std::memory_order_relaxed);
    const std::uint32_t limit = s.maxvalue != 0 ? s.maxvalue : static_cast<std::uint32_t>(INT_MAX);
    for (;;) {
        if (v >= limit) {
            if (s.maxvalue != 0) throw UsageError("semaphore or lock released too many times");
            throw OSError("releasing a semaphore", EOVERFLOW);
        }
        if (s.value.compare_exchange_weak(v, v + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) break;
    }
    if (s.waiters.load(std::memory_order_seq_cst) > 0) futex_wake(&s.value, 1);
}

int semaphore_value(const SharedBlock& block) {
    return static_cast<int>(state_of(block)->value.load(std::memory_order_relaxed));
}

std::string semaphore_repr(const SharedBlock& block) {
    const SemaphoreState& s = *state_of(block);
    const std::string value = std::to_string(s.value.load(std::memory_order_relaxed));
    if (s.maxvalue == 0) return "<Semaphore(value=" + value + ")>";
    return "<BoundedSemaphore(value=" + value + ", maxvalue=" + std::to_string(s.maxvalue) + ")>";
}

}  // namespace mproc::detail
