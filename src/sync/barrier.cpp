// Barrier: a round counter that waiters sleep on, under a robust mutex, with the identity of
// every party waiting in the current round so that waiters notice a party that died.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <new>
#include <string>

#include "mproc/errors.hpp"
#include "mproc/synchronize.hpp"
#include "base/futex.hpp"
#include "base/identity.hpp"
#include "base/mutex_state.hpp"
#include "base/mutex_state_guard.hpp"

namespace mproc::detail {
namespace {

constexpr int kMaxParties = 1 << 20;
// How often a waiter looks for a dead party: the bound on how long the others wait for one.
constexpr std::chrono::milliseconds kLookEvery{50};

struct BarrierState {
    MutexState lock;                      // guards the fields below
    std::atomic<std::uint32_t> round;     // futex word: bumped when a round ends (released or reset)
    std::uint32_t parties;
    std::uint32_t count;                  // arrived in the current round and still waiting
    std::uint32_t broken;
    std::uint64_t broken_rounds;          // bit (round % 64): that round was ended by reset()
    std::int64_t default_timeout;         // ns, or kForever
    ProcessIdentity waiting[1];           // [parties]: who arrived in the current round, in order
};

std::size_t state_size(int parties) {
    return sizeof(BarrierState) + sizeof(ProcessIdentity) * static_cast<std::size_t>(parties - 1);
}

BarrierState* state_of(const SharedBlock& block) {
    if (!block) [[unlikely]]
        throw_moved_from("this Barrier");
    return block.as<BarrierState>();
}

std::uint64_t round_bit(std::uint32_t round) { return std::uint64_t{1} << (round % 64); }

[[noreturn]] void throw_broken() { throw BrokenBarrierError("the barrier is broken"); }

// Breaks the barrier (caller holds the lock): everyone waiting now, and later, gets
// BrokenBarrierError until reset().
void break_barrier(BarrierState& s) {
    s.broken = 1;
    futex_wake(&s.round, kWakeAll);
}

// Takes the barrier's lock. A party that died holding it (in the middle of wait, reset or abort)
// may have left the state half-updated: the barrier breaks, which is what the others must learn.
MutexStateGuard lock_barrier(BarrierState& s) {
    const int rc = raw_mutex_acquire(s.lock, kForever);
    if (rc == EOWNERDEAD) {
        break_barrier(s);
    } else if (rc != 0) {
        throw OSError("locking a Barrier", rc);
    }
    return MutexStateGuard(s.lock, std::adopt_lock);
}

}  // namespace

void BarrierAction::throw_not_portable() {
    throw UsageError("a Barrier's action can travel to a spawn or forkserver child only when it is a function or a "
                     "lambda without captures");
}

SharedBlock barrier_create(int parties, std::int64_t default_timeout) {
    if (parties < 1 || parties > kMaxParties)
        throw UsageError("a Barrier needs between 1 and " + std::to_string(kMaxParties) + " parties, not " +
                         std::to_string(parties));
    SharedBlock block = allocate_shared_block(BlockKind::barrier, state_size(parties), alignof(BarrierState));
    auto* s = new (block.payload()) BarrierState{};
    pthread_mutexattr_t attributes;
    ::pthread_mutexattr_init(&attributes);
    ::pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    ::pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    const int rc = ::pthread_mutex_init(&s->lock.mutex, &attributes);
    ::pthread_mutexattr_destroy(&attributes);
    if (rc != 0) throw OSError("creating a Barrier", rc);
    s->parties = static_cast<std::uint32_t>(parties);
    s->default_timeout = default_timeout;
    return block;
}

void barrier_check(const SharedBlock& block) {
    const BarrierState& s = *state_of(block);
    const std::uint64_t size = shared_block_size(block);
    if (s.parties < 1 || s.parties > static_cast<std::uint32_t>(kMaxParties) ||
        size != state_size(static_cast<int>(s.parties)))
        throw DecodeError("shared memory: a received Barrier is malformed");
}

int barrier_wait(const SharedBlock& block, const BarrierAction& action, std::int64_t timeout, bool use_default) {
    BarrierState& s = *state_of(block);
    const ProcessIdentity self = self_identity();
    MutexStateGuard guard = lock_barrier(s);
    if (use_default) timeout = s.default_timeout;
    if (s.broken) throw_broken();

    const std::uint32_t round = s.round.load(std::memory_order_relaxed);
    const std::uint32_t index = s.count++;
    s.waiting[index] = self;

    if (index + 1 == s.parties) {
        // The last party: the action runs before anyone is released, as in Python.
        if (action) {
            try {
                action();
            } catch (...) {
                --s.count;  // this party leaves; the waiters leave as they see the barrier broken
                break_barrier(s);
                throw;
            }
        }
        s.count = 0;
        s.broken_rounds &= ~round_bit(round + 1);
        s.round.store(round + 1, std::memory_order_release);
        futex_wake(&s.round, kWakeAll);
        return static_cast<int>(index);
    }

    const Deadline deadline = Deadline::from_ns(timeout);
    for (;;) {
        guard.unlock();
        futex_wait(&s.round, round, deadline.capped(kLookEvery));
        const int rc = raw_mutex_acquire(s.lock, kForever);
        guard.adopt(s.lock);
        if (rc == EOWNERDEAD) break_barrier(s);

        if (s.round.load(std::memory_order_relaxed) != round) {
            // This round is over: released, or ended by reset().
            if (s.broken_rounds & round_bit(round)) throw_broken();
            return static_cast<int>(index);
        }
        if (!s.broken) {
            if (deadline.passed()) {
                break_barrier(s);  // Python: a wait that times out breaks the barrier
            } else {
                // Look at one other waiter: each looks at the one that arrived before it (the
                // first at the last), so every waiter is looked at and each look is cheap.
                const std::uint32_t other = index == 0 ? s.count - 1 : index - 1;
                if (other != index && other < s.count && !process_alive(s.waiting[other])) break_barrier(s);
            }
        }
        if (s.broken) {
            --s.count;
            throw_broken();
        }
    }
}

void barrier_reset(const SharedBlock& block) {
    BarrierState& s = *state_of(block);
    const MutexStateGuard guard = lock_barrier(s);
    const std::uint32_t round = s.round.load(std::memory_order_relaxed);
    if (s.count > 0) {
        // The parties waiting now are released with BrokenBarrierError; a new round begins.
        s.broken_rounds |= round_bit(round);
        s.broken_rounds &= ~round_bit(round + 1);
        s.count = 0;
        s.round.store(round + 1, std::memory_order_release);
        futex_wake(&s.round, kWakeAll);
    }
    s.broken = 0;
}

void barrier_abort(const SharedBlock& block) {
    BarrierState& s = *state_of(block);
    const MutexStateGuard guard = lock_barrier(s);
    break_barrier(s);
}

int barrier_parties(const SharedBlock& block) { return static_cast<int>(state_of(block)->parties); }

int barrier_n_waiting(const SharedBlock& block) {
    BarrierState& s = *state_of(block);
    const MutexStateGuard guard = lock_barrier(s);
    return s.broken ? 0 : static_cast<int>(s.count);
}

bool barrier_broken(const SharedBlock& block) {
    BarrierState& s = *state_of(block);
    const MutexStateGuard guard = lock_barrier(s);
    return s.broken != 0;
}

std::string barrier_repr(const SharedBlock& block) {
    char address[32];
    std::snprintf(address, sizeof address, "%#lx", reinterpret_cast<unsigned long>(block.payload()));
    if (barrier_broken(block)) return std::string("<Barrier at ") + address + " broken>";
    return std::string("<Barrier at ") + address + " waiters=" + std::to_string(barrier_n_waiting(block)) + "/" +
           std::to_string(barrier_parties(block)) + ">";
}

}  // namespace mproc::detail
