#pragma once
// Synchronization primitives shared between processes (Python's multiprocessing.synchronize):
// Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier.
//
//   mproc::Lock lock;
//   mproc::Process p([](mproc::Lock l) { std::scoped_lock guard(l); /* ... */ }, lock);
//   p.start();
//   { std::scoped_lock guard(lock); /* ... */ }
//
// Each object is a handle to state in shared memory: copies refer to the same lock, as Python
// references do, and a copy passed to a Process as an argument is the same lock in the child.
// Under fork the child inherits it; under spawn and forkserver its memory travels with the start
// request as a descriptor and is mapped again in the child. Sending one anywhere else (a Queue, a
// Connection) is a UsageError, as Python refuses to pickle a Lock outside spawning.
// The shared memory lives as long as any process holds a handle: a child keeps using a lock
// after the process that created it has ended.
//
// How they differ from the standard library's:
//  - They work between processes, and every one of them can be copied (a copy is a reference).
//  - Lock and RLock are robust: when the owner dies holding one (a process killed, a thread that
//    ended), the next acquirer gets the lock and an OwnerDiedError (errors.hpp), which holds the
//    lock until it is destroyed. A std::mutex whose owner vanished stays locked forever.
//  - Every blocking call has a timed form, with std::chrono durations; timeouts are measured on
//    the steady clock and survive signals (EINTR) without being restarted from zero.
//
// How they differ from Python's:
//  - Names are Python's, and so are the semantics of acquire(block, timeout) → bool, release(),
//    locked(), wait(timeout) → bool, notify(n), notify_all(), get_value() and the Barrier's. Each also meets
//    the standard Lockable / TimedLockable requirements where Python has a context manager
//    (lock, try_lock, unlock, try_lock_for, try_lock_until), so std::scoped_lock and
//    std::unique_lock work.
//  - Misuse raises UsageError with Python's message: releasing a Lock that is not locked
//    ("semaphore or lock released too many times"), releasing an RLock one does not own
//    ("attempt to release recursive lock not owned by thread"), over-releasing a BoundedSemaphore,
//    waiting on or notifying a Condition without holding its lock.
//  - A Lock must be released by the thread that acquired it (as a std::mutex must; Python's
//    multiprocessing.Lock lets anyone release it). This is what makes owner death detectable:
//    releasing a Lock that another thread or process holds is a UsageError.
//  - Condition::wait() may wake up without a notify (a spurious wake-up, as
//    std::condition_variable may); notify(n) wakes at least min(n, waiting) waiters and sometimes
//    more. Use wait_for(predicate) where it matters. In exchange, notify never waits for the
//    waiters (Python's does, and hangs when one of them died).
//  - repr() gives Python's repr: <Lock(owner=None)>, <RLock(MainProcess, 2)>,
//    <Condition(<RLock(None, 0)>, 0)>, <Semaphore(value=2)>, <BoundedSemaphore(value=2,
//    maxvalue=2)>, <Event at 0x... unset>, <Barrier at 0x... waiters=0/3>. An owner that is a
//    thread other than the main thread shows as <process name>|<thread id>.
//
// Processes that die:
//  - Lock, RLock (and so a Condition's lock, a Value's lock): see OwnerDiedError. A process that is
//    merely stopped (SIGSTOP) still owns its locks: timed acquisitions time out, and nobody is told
//    the owner died, because it has not.
//  - Event: set() never waits for anyone, so a dead waiter cannot block it; wait() returns when set.
//  - Condition: notify() never waits for anyone; a waiter that died is simply gone.
//  - Barrier: a party that dies while waiting breaks the barrier; the others get
//    BrokenBarrierError within about 100 ms (waiters look for dead parties that often). A party
//    that dies before reaching wait() cannot be told from one that is late: use a timeout.
//  - Semaphore: a unit taken by a process that dies is not given back (a semaphore has no owner),
//    as with POSIX and Python semaphores.
//
// Memory ordering: acquiring a Lock, RLock or Semaphore, returning from Event::wait() after a
// set(), from Condition::wait() and from Barrier::wait() all synchronize with the matching
// release, set(), notify or arrivals (acquire/release semantics), across processes as across
// threads. Handles themselves are not synchronized: one handle object must not be assigned in one
// thread while another thread uses it (copies are independent and may be used freely).
#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "mproc/detail/barrier_action.hpp"
#include "mproc/detail/shared_block.hpp"
#include "mproc/detail/sync_blocks.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/errors.hpp"

namespace mproc {

class Condition;

namespace detail {

// Lock and RLock differ only in recursion: one implementation, a robust process-shared mutex in a
// shared block.
template <bool Recursive>
class BasicLock {
public:
    BasicLock() : block_(mutex_create(Recursive)) {}

    // Lockable / TimedLockable.
    void lock() { mutex_lock(block_); }
    bool try_lock() { return mutex_acquire(block_, 0); }
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return mutex_acquire(block_, timeout_ns(timeout));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& when) {
        return mutex_acquire(block_, timeout_until(when));
    }
    void unlock() { mutex_unlock(block_); }

    // Python's acquire(block=True, timeout=None): false when not acquired in time. With
    // block == false the timeout is ignored.
    bool acquire(bool block = true) { return mutex_acquire(block_, block ? kForever : 0); }
    template <class Rep, class Period>
    bool acquire(bool block, std::chrono::duration<Rep, Period> timeout) {
        return mutex_acquire(block_, block ? timeout_ns(timeout) : 0);
    }
    void release() { mutex_unlock(block_); }

    // Python's locked() (3.14): whether any thread of any process holds the lock now (a snapshot).
    // A lock whose owner died and that nobody has taken since is not locked: the next acquire()
    // takes it at once, with an OwnerDiedError.
    bool locked() const { return mutex_locked(block_); }

    std::string repr() const { return mutex_repr(block_); }

    template <class Archive>
    void save(Archive& ar) const {
        save_shared_block(ar, block_, Recursive ? "an RLock" : "a Lock");
    }
    template <class Archive>
    void load(Archive& ar) {
        auto block = load_shared_block(ar, BlockKind::mutex);
        mutex_check(block, Recursive);
        block_ = std::move(block);
    }

private:
    friend class mproc::Condition;
    SharedBlock block_;
};

}  // namespace detail

// A non-recursive lock (Python's multiprocessing.Lock). Acquiring it again from the thread that
// holds it blocks (or times out), as in Python.
class Lock : public detail::BasicLock<false> {};

// A recursive lock (Python's multiprocessing.RLock): the owning thread may acquire it again, and
// must release it as many times.
class RLock : public detail::BasicLock<true> {};

// A counting semaphore (Python's multiprocessing.Semaphore). Also Lockable, so
// std::scoped_lock takes and gives back one unit.
class Semaphore {
public:
    // UsageError("semaphore initial value must be >= 0") for a negative value.
    explicit Semaphore(int value = 1) : block_(detail::semaphore_create(value, 0)) {}

    bool acquire(bool block = true) { return detail::semaphore_acquire(block_, block ? detail::kForever : 0); }
    template <class Rep, class Period>
    bool acquire(bool block, std::chrono::duration<Rep, Period> timeout) {
        return detail::semaphore_acquire(block_, block ? detail::timeout_ns(timeout) : 0);
    }
    void release() { detail::semaphore_release(block_); }

    void lock() { detail::semaphore_acquire(block_, detail::kForever); }
    bool try_lock() { return detail::semaphore_acquire(block_, 0); }
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return detail::semaphore_acquire(block_, detail::timeout_ns(timeout));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& when) {
        return detail::semaphore_acquire(block_, detail::timeout_until(when));
    }
    void unlock() { detail::semaphore_release(block_); }

    // The current count (a snapshot: other processes may change it at once).
    int get_value() const { return detail::semaphore_value(block_); }

    std::string repr() const { return detail::semaphore_repr(block_); }

    template <class Archive>
    void save(Archive& ar) const {
        detail::save_shared_block(ar, block_, "a Semaphore");
    }
    template <class Archive>
    void load(Archive& ar) {
        auto block = detail::load_shared_block(ar, detail::BlockKind::semaphore);
        detail::semaphore_check(block, false);
        block_ = std::move(block);
    }

protected:
    explicit Semaphore(detail::SharedBlock block) noexcept : block_(std::move(block)) {}
    detail::SharedBlock block_;
};

// A semaphore whose count may not exceed its initial value (Python's BoundedSemaphore):
// release() beyond it is UsageError("semaphore or lock released too many times").
class BoundedSemaphore : public Semaphore {
public:
    explicit BoundedSemaphore(int value = 1) : Semaphore(detail::semaphore_create(value, value)) {}

    template <class Archive>
    void save(Archive& ar) const {
        detail::save_shared_block(ar, block_, "a BoundedSemaphore");
    }
    template <class Archive>
    void load(Archive& ar) {
        auto block = detail::load_shared_block(ar, detail::BlockKind::semaphore);
        detail::semaphore_check(block, true);
        block_ = std::move(block);
    }
};

// A condition variable bound to a Lock or an RLock (Python's multiprocessing.Condition; the
// default lock is a new RLock). The Condition is Lockable over its lock, so
// `std::unique_lock guard(cond);` is Python's `with cond:`.
class Condition {
public:
    Condition() : Condition(RLock()) {}
    explicit Condition(const Lock& lock) : lock_(lock.block_), state_(detail::condition_create()) {}
    explicit Condition(const RLock& lock) : lock_(lock.block_), state_(detail::condition_create()) {}

    void lock() { detail::mutex_lock(lock_); }
    bool try_lock() { return detail::mutex_acquire(lock_, 0); }
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
        return detail::mutex_acquire(lock_, detail::timeout_ns(timeout));
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& when) {
        return detail::mutex_acquire(lock_, detail::timeout_until(when));
    }
    void unlock() { detail::mutex_unlock(lock_); }
    bool acquire(bool block = true) { return detail::mutex_acquire(lock_, block ? detail::kForever : 0); }
    template <class Rep, class Period>
    bool acquire(bool block, std::chrono::duration<Rep, Period> timeout) {
        return detail::mutex_acquire(lock_, block ? detail::timeout_ns(timeout) : 0);
    }
    void release() { detail::mutex_unlock(lock_); }

    // Releases the lock (every level of an RLock), waits for a notify, takes the lock back
    // (restoring the levels). The caller must hold the lock: UsageError("must acquire() condition
    // before using wait()") otherwise. If the lock's owner died while this waited, the lock is
    // re-acquired and OwnerDiedError thrown, with the lock held as before the wait.
    void wait() { detail::condition_wait(state_, lock_, detail::kForever); }
    // As wait(), for at most `timeout`: false when it timed out.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) {
        return detail::condition_wait(state_, lock_, detail::timeout_ns(timeout));
    }

    // Python's wait_for(predicate): waits until predicate() is true, checking it first.
    template <class Predicate>
        requires std::predicate<Predicate&>
    bool wait_for(Predicate predicate) {
        while (!predicate()) wait();
        return true;
    }
    // Python's wait_for(predicate, timeout): the predicate's last value, false if the time ran
    // out first. The timeout covers the whole call, however many wake-ups it takes.
    template <class Predicate, class Rep, class Period>
        requires std::predicate<Predicate&>
    bool wait_for(Predicate predicate, std::chrono::duration<Rep, Period> timeout) {
        const std::int64_t total = detail::timeout_ns(timeout);
        if (total == detail::kForever) return wait_for(std::move(predicate));
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(total);
        for (;;) {
            if (predicate()) return true;
            const auto left = deadline - std::chrono::steady_clock::now();
            if (left <= std::chrono::steady_clock::duration::zero()) return false;
            detail::condition_wait(state_, lock_, detail::timeout_ns(left));
        }
    }

    // Wakes up to `n` waiters (at least min(n, waiting); see above). The caller must hold the
    // lock: UsageError("lock is not owned") otherwise.
    void notify(int n = 1) { detail::condition_notify(state_, lock_, n); }
    void notify_all() { detail::condition_notify(state_, lock_, detail::kNotifyAll); }

    std::string repr() const { return detail::condition_repr(state_, lock_); }

    template <class Archive>
    void save(Archive& ar) const {
        detail::save_shared_block(ar, lock_, "a Condition");
        detail::save_shared_block(ar, state_, "a Condition");
    }
    template <class Archive>
    void load(Archive& ar) {
        auto lock = detail::load_shared_block(ar, detail::BlockKind::mutex);
        auto state = detail::load_shared_block(ar, detail::BlockKind::condition);
        lock_ = std::move(lock);
        state_ = std::move(state);
    }

private:
    detail::SharedBlock lock_;
    detail::SharedBlock state_;
};

// A flag that processes can wait for (Python's multiprocessing.Event).
class Event {
public:
    Event() : block_(detail::event_create()) {}

    bool is_set() const { return detail::event_is_set(block_); }
    // Sets the flag and wakes every waiter. Never blocks.
    void set() { detail::event_set(block_); }
    void clear() { detail::event_clear(block_); }
    // Waits until the flag is set; returns the flag, which is true unless the waiter was woken by
    // a set() that a clear() undid before it looked (Python's semantics).
    bool wait() { return detail::event_wait(block_, detail::kForever); }
    // As wait(), for at most `timeout`: false when the flag is still unset then.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) {
        return detail::event_wait(block_, detail::timeout_ns(timeout));
    }

    std::string repr() const { return detail::event_repr(block_); }

    template <class Archive>
    void save(Archive& ar) const {
        detail::save_shared_block(ar, block_, "an Event");
    }
    template <class Archive>
    void load(Archive& ar) {
        block_ = detail::load_shared_block(ar, detail::BlockKind::event);
    }

private:
    detail::SharedBlock block_;
};

// Options of a Barrier, for designated initializers:
//   mproc::Barrier b(3, {.action = report, .timeout = std::chrono::seconds(5)});
struct BarrierOptions {
    // Run by the last party to arrive, before the others are released. If it throws, the barrier
    // breaks and the exception propagates from that party's wait().
    detail::BarrierAction action{};
    // The default timeout of wait(); unset: wait forever.
    std::optional<std::chrono::nanoseconds> timeout{};
};

// A rendezvous of `parties` participants (Python's Barrier, from threading): each wait() returns
// once all have arrived, with a distinct index in [0, parties). The barrier is then ready for the
// next round. It breaks (BrokenBarrierError for those waiting and those to come, until reset())
// when aborted, when a wait times out, when the action throws, or when a waiting party dies.
class Barrier {
public:
    // An empty handle, for decoding or later assignment; using it is a UsageError.
    Barrier() noexcept = default;
    // UsageError for parties < 1.
    explicit Barrier(int parties, BarrierOptions options = {})
        : block_(detail::barrier_create(parties, options.timeout ? detail::timeout_ns(*options.timeout)
                                                                 : detail::kForever)),
          action_(std::move(options.action)) {}

    // Returns this party's arrival index (parties - 1 for the last, which ran the action).
    int wait() { return detail::barrier_wait(block_, action_, detail::kForever, true); }
    template <class Rep, class Period>
    int wait(std::chrono::duration<Rep, Period> timeout) {
        return detail::barrier_wait(block_, action_, detail::timeout_ns(timeout), false);
    }
    // Back to the initial state; parties waiting now get BrokenBarrierError.
    void reset() { detail::barrier_reset(block_); }
    // Breaks the barrier: parties waiting now and later get BrokenBarrierError until reset().
    void abort() { detail::barrier_abort(block_); }

    int parties() const { return detail::barrier_parties(block_); }
    int n_waiting() const { return detail::barrier_n_waiting(block_); }
    bool broken() const { return detail::barrier_broken(block_); }

    std::string repr() const { return detail::barrier_repr(block_); }

    template <class Archive>
    void save(Archive& ar) const {
        detail::save_shared_block(ar, block_, "a Barrier");
        ar(action_);
    }
    template <class Archive>
    void load(Archive& ar) {
        auto block = detail::load_shared_block(ar, detail::BlockKind::barrier);
        detail::barrier_check(block);
        detail::BarrierAction action;
        ar(action);
        block_ = std::move(block);
        action_ = std::move(action);
    }

private:
    detail::SharedBlock block_;
    detail::BarrierAction action_;
};

}  // namespace mproc
