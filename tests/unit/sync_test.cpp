// Synchronization primitives, shared values and named shared memory within one process (threads
// stand in for the other processes; the conformance and fault suites use real processes):
// Python's semantics (spec/python_api.md §5-§7), the Lockable requirements, error messages,
// reprs, owner death of a thread, and the shared memory underneath (sealing, arenas, leaks).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/codec.hpp"
#include "mproc/context.hpp"
#include "mproc/errors.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"

using namespace std::chrono_literals;
using mproc::testing::this_thread_id;
using mproc::testing::time_of;
using mproc::testing::wait_until_blocked;

namespace {

#define EXPECT_THROW_MESSAGE(statement, type, message)                  \
    do {                                                                \
        try {                                                           \
            statement;                                                  \
            ADD_FAILURE() << "expected " #type ": " << (message);       \
        } catch (const type& e) {                                       \
            EXPECT_STREQ(e.what(), message);                            \
        }                                                               \
    } while (0)

// Every test checks that it leaves no descriptor and no /dev/shm entry behind, under a watchdog.
class Sync : public ::testing::Test {
protected:
    void SetUp() override {
        fds_ = mproc::testing::count_open_fds();
        shm_ = mproc::testing::shm_entries();
    }
    void TearDown() override {
        EXPECT_EQ(mproc::testing::count_open_fds(), fds_) << "descriptors leaked";
        EXPECT_TRUE(mproc::testing::new_shm_entries(shm_).empty()) << "/dev/shm entries leaked";
    }
    mproc::testing::Watchdog watchdog_{std::chrono::seconds(60), "a sync unit test"};
    int fds_ = 0;
    std::set<std::string> shm_;
};

using LockTest = Sync;
using RLockTest = Sync;
using SemaphoreTest = Sync;
using EventTest = Sync;
using ConditionTest = Sync;
using BarrierTest = Sync;
using OwnerDied = Sync;
using SharedValues = Sync;
using SharedSegments = Sync;
using SharedMemoryTest = Sync;

// Runs `f` on another thread and waits for it.
template <class F>
auto on_other_thread(F f) {
    return std::async(std::launch::async, std::move(f)).get();
}

// What release() of `lock` (a copy: the same lock) says on another thread: its UsageError's
// message, or "released" if it succeeded.
template <class L>
std::string release_on_other_thread(L lock) {
    return on_other_thread([lock]() mutable {
        try {
            lock.release();
        } catch (const mproc::UsageError& e) {
            return std::string(e.what());
        }
        return std::string("released");
    });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Lock

TEST_F(LockTest, AcquireReleaseAndTryLock) {
    mproc::Lock lock;
    EXPECT_TRUE(lock.acquire());
    EXPECT_FALSE(lock.try_lock());
    EXPECT_FALSE(lock.acquire(false));
    EXPECT_FALSE(on_other_thread([lock]() mutable { return lock.acquire(false); }));
    lock.release();
    EXPECT_TRUE(on_other_thread([lock]() mutable {
        bool got = lock.try_lock();
        if (got) lock.unlock();
        return got;
    }));
}

TEST_F(LockTest, MeetsTheLockableRequirements) {
    mproc::Lock lock;
    {
        std::scoped_lock guard(lock);
        EXPECT_EQ(lock.repr(), "<Lock(owner=MainProcess)>");
    }
    EXPECT_EQ(lock.repr(), "<Lock(owner=None)>");
    {
        std::unique_lock guard(lock, std::defer_lock);
        EXPECT_TRUE(guard.try_lock_for(10ms));
        EXPECT_TRUE(guard.owns_lock());
    }
    mproc::Lock other;
    { std::scoped_lock both(lock, other); }
    EXPECT_TRUE(lock.try_lock_until(std::chrono::steady_clock::now() + 10ms));
    lock.unlock();
    EXPECT_TRUE(lock.try_lock_until(std::chrono::system_clock::now() + 10ms));
    lock.unlock();
}

TEST_F(LockTest, TimedAcquireTimesOutWhileAnotherThreadHoldsIt) {
    mproc::Lock lock;
    lock.acquire();
    auto took = time_of([&] {
        EXPECT_FALSE(on_other_thread([lock]() mutable { return lock.acquire(true, 100ms); }));
    });
    EXPECT_GE(took, 100ms);
    EXPECT_LT(took, 5s);
    // A negative timeout is zero, as in Python.
    EXPECT_FALSE(on_other_thread([lock]() mutable { return lock.acquire(true, -1s); }));
    // block=false ignores the timeout.
    took = time_of([&] { EXPECT_FALSE(on_other_thread([lock]() mutable { return lock.acquire(false, 10s); })); });
    EXPECT_LT(took, 5s);
    lock.release();
}

TEST_F(LockTest, BlockedAcquireProceedsWhenReleased) {
    mproc::Lock lock;
    lock.acquire();
    std::atomic<bool> got{false};
    std::atomic<pid_t> tid{0};
    std::thread waiter([lock, &got, &tid]() mutable {
        tid = this_thread_id();
        lock.acquire();
        got = true;
        lock.release();
    });
    ASSERT_TRUE(mproc::testing::eventually([&] { return tid != 0; }));
    ASSERT_TRUE(wait_until_blocked(tid));  // asleep in acquire()
    EXPECT_FALSE(got);
    lock.release();
    waiter.join();
    EXPECT_TRUE(got);
}

TEST_F(LockTest, ReacquiringFromTheHoldingThreadTimesOutAsInPython) {
    mproc::Lock lock;
    lock.acquire();
    EXPECT_FALSE(lock.acquire(true, 50ms));
    lock.release();
}

TEST_F(LockTest, ReleasingAnUnlockedLockIsPythonsError) {
    mproc::Lock lock;
    EXPECT_THROW_MESSAGE(lock.release(), mproc::UsageError, "semaphore or lock released too many times");
    lock.acquire();
    lock.release();
    EXPECT_THROW_MESSAGE(lock.unlock(), mproc::UsageError, "semaphore or lock released too many times");
}

TEST_F(LockTest, ReleasingAnotherThreadsLockIsAnError) {
    mproc::Lock lock;
    lock.acquire();
    const std::string message = release_on_other_thread(lock);
    EXPECT_NE(message.find("another thread or process holds"), std::string::npos) << message;
    lock.release();
}

TEST_F(LockTest, ReprNamesTheOwner) {
    mproc::Lock lock;
    EXPECT_EQ(lock.repr(), "<Lock(owner=None)>");
    lock.acquire();
    EXPECT_EQ(lock.repr(), "<Lock(owner=MainProcess)>");
    EXPECT_EQ(on_other_thread([lock] { return lock.repr(); }), "<Lock(owner=SomeOtherThread)>");
    std::string from_thread;
    lock.release();
    std::thread t([&from_thread, lock]() mutable {
        lock.acquire();
        from_thread = lock.repr();
        lock.release();
    });
    t.join();
    EXPECT_TRUE(std::regex_match(from_thread, std::regex(R"(<Lock\(owner=MainProcess\|\d+\)>)"))) << from_thread;
}

TEST_F(LockTest, CopiesAreTheSameLock) {
    mproc::Lock a;
    mproc::Lock b = a;
    a.acquire();
    EXPECT_FALSE(b.try_lock());
    b = mproc::Lock();
    EXPECT_TRUE(b.try_lock());
    b.release();
    a.release();
}

TEST_F(LockTest, MutualExclusionBetweenThreads) {
    mproc::Lock lock;
    long counter = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([lock, &counter]() mutable {
            for (int i = 0; i < 20000; ++i) {
                std::scoped_lock guard(lock);
                ++counter;
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(counter, 80000);
}

TEST_F(LockTest, MovedFromHandleIsAUsageError) {
    mproc::Lock a;
    mproc::Lock b = std::move(a);
    EXPECT_THROW(a.acquire(), mproc::UsageError);  // NOLINT(bugprone-use-after-move): what is tested
    EXPECT_TRUE(b.acquire());
    b.release();
}

// ---------------------------------------------------------------------------------------------
// RLock

TEST_F(RLockTest, IsRecursiveAndCountsLevels) {
    mproc::RLock lock;
    EXPECT_EQ(lock.repr(), "<RLock(None, 0)>");
    lock.acquire();
    EXPECT_TRUE(lock.acquire(false));
    EXPECT_EQ(lock.repr(), "<RLock(MainProcess, 2)>");
    EXPECT_EQ(on_other_thread([lock] { return lock.repr(); }), "<RLock(SomeOtherThread, nonzero)>");
    EXPECT_FALSE(on_other_thread([lock]() mutable { return lock.acquire(true, 20ms); }));
    lock.release();
    EXPECT_EQ(lock.repr(), "<RLock(MainProcess, 1)>");
    EXPECT_FALSE(on_other_thread([lock]() mutable { return lock.try_lock(); }));
    lock.release();
    EXPECT_EQ(lock.repr(), "<RLock(None, 0)>");
    EXPECT_TRUE(on_other_thread([lock]() mutable {
        bool got = lock.try_lock();
        if (got) lock.unlock();
        return got;
    }));
    {
        std::scoped_lock a(lock);
        std::scoped_lock b(lock);
    }
    EXPECT_EQ(lock.repr(), "<RLock(None, 0)>");
}

TEST_F(RLockTest, ReleaseByANonOwnerIsPythonsError) {
    mproc::RLock lock;
    EXPECT_THROW_MESSAGE(lock.release(), mproc::UsageError, "attempt to release recursive lock not owned by thread");
    lock.acquire();
    const std::string message = release_on_other_thread(lock);
    EXPECT_EQ(message, "attempt to release recursive lock not owned by thread");
    lock.release();
}

TEST_F(RLockTest, ALockIsNotAnRLockOnTheWire) {
    // Decoding checks the kind: a block is what the receiver expects or a DecodeError. Encoding
    // outside a start request is refused first, as in Python.
    mproc::Lock lock;
    try {
        (void)mproc::dumps(lock);
        ADD_FAILURE() << "a Lock was encoded outside a start request";
    } catch (const mproc::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("a Lock can only be shared with a child process through inheritance"),
                  std::string::npos)
            << e.what();
    }
}

// ---------------------------------------------------------------------------------------------
// Semaphore, BoundedSemaphore

TEST_F(SemaphoreTest, CountsAndReports) {
    mproc::Semaphore s(2);
    EXPECT_EQ(s.get_value(), 2);
    EXPECT_EQ(s.repr(), "<Semaphore(value=2)>");
    EXPECT_TRUE(s.acquire());
    EXPECT_TRUE(s.acquire(false));
    EXPECT_FALSE(s.acquire(false));
    EXPECT_EQ(s.get_value(), 0);
    auto took = time_of([&] { EXPECT_FALSE(s.acquire(true, 50ms)); });
    EXPECT_GE(took, 50ms);
    s.release();
    s.release();
    s.release();  // an unbounded semaphore may go above its initial value
    EXPECT_EQ(s.get_value(), 3);
    { std::scoped_lock guard(s); EXPECT_EQ(s.get_value(), 2); }
    EXPECT_EQ(s.get_value(), 3);
    EXPECT_EQ(mproc::Semaphore().get_value(), 1);
    EXPECT_THROW_MESSAGE(mproc::Semaphore(-1), mproc::UsageError, "semaphore initial value must be >= 0");
}

TEST_F(SemaphoreTest, BoundedOverReleaseIsPythonsError) {
    mproc::BoundedSemaphore s(2);
    EXPECT_EQ(s.repr(), "<BoundedSemaphore(value=2, maxvalue=2)>");
    EXPECT_THROW_MESSAGE(s.release(), mproc::UsageError, "semaphore or lock released too many times");
    s.acquire();
    EXPECT_EQ(s.repr(), "<BoundedSemaphore(value=1, maxvalue=2)>");
    s.release();
    EXPECT_THROW_MESSAGE(s.release(), mproc::UsageError, "semaphore or lock released too many times");
    EXPECT_EQ(s.get_value(), 2);
}

TEST_F(SemaphoreTest, ReleaseWakesABlockedAcquirer) {
    mproc::Semaphore s(0);
    std::atomic<pid_t> tid{0};
    auto result = std::async(std::launch::async, [s, &tid]() mutable {
        tid = this_thread_id();
        return s.acquire(true, 10s);
    });
    ASSERT_TRUE(mproc::testing::eventually([&] { return tid != 0; }));
    ASSERT_TRUE(wait_until_blocked(tid));  // asleep in acquire()
    s.release();
    EXPECT_TRUE(result.get());
    EXPECT_EQ(s.get_value(), 0);
}

TEST_F(SemaphoreTest, LimitsConcurrency) {
    mproc::Semaphore s(2);
    std::atomic<int> inside{0}, most{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t)
        threads.emplace_back([&, s]() mutable {
            for (int i = 0; i < 200; ++i) {
                std::scoped_lock guard(s);
                int now = ++inside;
                int seen = most.load();
                while (now > seen && !most.compare_exchange_weak(seen, now)) {
                }
                std::this_thread::yield();
                --inside;
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_LE(most.load(), 2);
    EXPECT_EQ(s.get_value(), 2);
}

// ---------------------------------------------------------------------------------------------
// Event

TEST_F(EventTest, SetClearWait) {
    mproc::Event e;
    EXPECT_FALSE(e.is_set());
    EXPECT_TRUE(std::regex_match(e.repr(), std::regex("<Event at 0x[0-9a-f]+ unset>"))) << e.repr();
    auto took = time_of([&] { EXPECT_FALSE(e.wait(50ms)); });
    EXPECT_GE(took, 50ms);
    e.set();
    EXPECT_TRUE(e.is_set());
    EXPECT_TRUE(e.wait());
    EXPECT_TRUE(e.wait(0s));
    EXPECT_TRUE(std::regex_match(e.repr(), std::regex("<Event at 0x[0-9a-f]+ set>"))) << e.repr();
    e.set();  // setting twice is harmless
    e.clear();
    EXPECT_FALSE(e.is_set());
    EXPECT_FALSE(e.wait(0s));
}

TEST_F(EventTest, SetWakesEveryWaiter) {
    mproc::Event e;
    std::vector<std::future<bool>> waiters;
    std::vector<std::atomic<pid_t>> tids(4);
    for (auto& tid : tids)
        waiters.push_back(std::async(std::launch::async, [e, &tid]() mutable {
            tid = this_thread_id();
            return e.wait(10s);
        }));
    for (auto& tid : tids) {
        ASSERT_TRUE(mproc::testing::eventually([&] { return tid != 0; }));
        ASSERT_TRUE(wait_until_blocked(tid));  // every one asleep in wait()
    }
    e.set();
    for (auto& w : waiters) EXPECT_TRUE(w.get());
}

TEST_F(EventTest, AWaiterWokenBySetThenClearReturnsFalseAsInPython) {
    // Python: wait() returns the flag after waking; a set() undone by clear() before the waiter
    // looks still ends the wait (it does not sleep again until the timeout).
    mproc::Event e;
    std::atomic<pid_t> tid{0};
    auto waiter = std::async(std::launch::async, [e, &tid]() mutable {
        tid = this_thread_id();
        const auto start = std::chrono::steady_clock::now();
        bool result = e.wait(20s);
        return std::make_pair(result, std::chrono::steady_clock::now() - start);
    });
    ASSERT_TRUE(mproc::testing::eventually([&] { return tid != 0; }));
    ASSERT_TRUE(wait_until_blocked(tid));  // asleep in wait()
    // set and clear back to back; the waiter is woken by set and finds the flag cleared, or (if
    // it was slow to look) still set.
    e.set();
    e.clear();
    auto [result, took] = waiter.get();
    EXPECT_LT(took, 10s) << "the waiter missed the set()";
    (void)result;
}

// ---------------------------------------------------------------------------------------------
// Condition

TEST_F(ConditionTest, MisuseIsPythonsError) {
    mproc::Condition c;
    EXPECT_THROW_MESSAGE(c.wait(), mproc::UsageError, "must acquire() condition before using wait()");
    EXPECT_THROW_MESSAGE(c.notify(), mproc::UsageError, "lock is not owned");
    EXPECT_THROW_MESSAGE(c.notify_all(), mproc::UsageError, "lock is not owned");
    EXPECT_EQ(c.repr(), "<Condition(<RLock(None, 0)>, 0)>");
    mproc::Lock lock;
    mproc::Condition over_lock(lock);
    EXPECT_EQ(over_lock.repr(), "<Condition(<Lock(owner=None)>, 0)>");
    lock.acquire();
    EXPECT_EQ(over_lock.repr(), "<Condition(<Lock(owner=MainProcess)>, 0)>");
    over_lock.notify();  // holding the shared lock is holding the condition's
    lock.release();
}

TEST_F(ConditionTest, WaitTimesOutAndKeepsTheLock) {
    mproc::Condition c;
    std::unique_lock guard(c);
    auto took = time_of([&] { EXPECT_FALSE(c.wait(50ms)); });
    EXPECT_GE(took, 50ms);
    EXPECT_EQ(c.repr(), "<Condition(<RLock(MainProcess, 1)>, 0)>");
}

TEST_F(ConditionTest, NotifyWakesAWaiterAndWaitRestoresRecursionLevels) {
    mproc::Condition c;
    std::atomic<bool> ready{false};
    auto waiter = std::async(std::launch::async, [c, &ready]() mutable {
        c.acquire();
        c.acquire();  // two levels; wait releases both and restores both
        ready = true;
        bool notified = c.wait(10s);
        std::string repr = c.repr();
        c.release();
        c.release();
        return std::make_pair(notified, repr);
    });
    while (!ready) std::this_thread::sleep_for(1ms);
    {
        std::unique_lock guard(c);  // only possible if the waiter released both levels
        EXPECT_EQ(c.repr(), "<Condition(<RLock(MainProcess, 1)>, 1)>");
        c.notify();
    }
    auto [notified, repr] = waiter.get();
    EXPECT_TRUE(notified);
    EXPECT_TRUE(std::regex_match(repr, std::regex(R"(<Condition\(<RLock\(MainProcess\|\d+, 2\)>, 0\)>)"))) << repr;
}

TEST_F(ConditionTest, NotifyAllWakesEveryWaiterAndNotifyNAtLeastN) {
    mproc::Lock lock;
    mproc::Condition c(lock);
    int generation = 0;
    std::atomic<int> waiting{0}, woken{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([c, &generation, &waiting, &woken]() mutable {
            std::unique_lock guard(c);
            ++waiting;
            if (c.wait_for([&] { return generation > 0; }, 10s)) ++woken;
        });
    while (waiting < 4) std::this_thread::sleep_for(1ms);
    {
        std::unique_lock guard(c);
        generation = 1;
        c.notify(2);
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (woken.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    EXPECT_GE(woken.load(), 2);
    {
        std::unique_lock guard(c);
        c.notify_all();
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(woken.load(), 4);
}

TEST_F(ConditionTest, WaitForReturnsThePredicatesLastValue) {
    mproc::Condition c;
    std::unique_lock guard(c);
    int calls = 0;
    EXPECT_TRUE(c.wait_for([&] { return ++calls > 0; }));
    EXPECT_EQ(calls, 1);  // true at once: no wait
    auto took = time_of([&] { EXPECT_FALSE(c.wait_for([] { return false; }, 60ms)); });
    EXPECT_GE(took, 60ms);
    EXPECT_LT(took, 5s);
}

// ---------------------------------------------------------------------------------------------
// Barrier

namespace {
std::atomic<int> barrier_actions{0};
void count_barrier_action() { ++barrier_actions; }
}  // namespace

TEST_F(BarrierTest, ReleasesAllPartiesWithDistinctIndicesAndRunsTheActionOnce) {
    barrier_actions = 0;
    mproc::Barrier b(3, {.action = count_barrier_action});
    EXPECT_EQ(b.parties(), 3);
    EXPECT_EQ(b.n_waiting(), 0);
    EXPECT_FALSE(b.broken());
    EXPECT_TRUE(std::regex_match(b.repr(), std::regex("<Barrier at 0x[0-9a-f]+ waiters=0/3>"))) << b.repr();
    for (int round = 0; round < 3; ++round) {
        std::vector<std::future<int>> parties;
        for (int i = 0; i < 3; ++i) parties.push_back(std::async(std::launch::async, [b]() mutable { return b.wait(); }));
        std::set<int> indices;
        for (auto& p : parties) indices.insert(p.get());
        EXPECT_EQ(indices, (std::set<int>{0, 1, 2}));
    }
    EXPECT_EQ(barrier_actions.load(), 3);
}

TEST_F(BarrierTest, AbortBreaksItForWaitersAndLaterArrivalsUntilReset) {
    mproc::Barrier b(3);
    auto waiter = std::async(std::launch::async, [b]() mutable {
        try {
            b.wait();
        } catch (const mproc::BrokenBarrierError&) {
            return true;
        }
        return false;
    });
    while (b.n_waiting() < 1) std::this_thread::sleep_for(1ms);
    EXPECT_EQ(b.n_waiting(), 1);
    b.abort();
    EXPECT_TRUE(waiter.get());
    EXPECT_TRUE(b.broken());
    EXPECT_EQ(b.n_waiting(), 0);
    EXPECT_TRUE(std::regex_match(b.repr(), std::regex("<Barrier at 0x[0-9a-f]+ broken>"))) << b.repr();
    EXPECT_THROW(b.wait(), mproc::BrokenBarrierError);
    b.reset();
    EXPECT_FALSE(b.broken());
    mproc::Barrier one(1);
    EXPECT_EQ(one.wait(), 0);
}

TEST_F(BarrierTest, ResetBreaksTheCurrentWaitersOnlyAndStartsANewRound) {
    mproc::Barrier b(2);
    auto waiter = std::async(std::launch::async, [b]() mutable {
        try {
            b.wait(10s);
        } catch (const mproc::BrokenBarrierError&) {
            return true;
        }
        return false;
    });
    while (b.n_waiting() < 1) std::this_thread::sleep_for(1ms);
    b.reset();
    EXPECT_TRUE(waiter.get());
    EXPECT_FALSE(b.broken());
    auto other = std::async(std::launch::async, [b]() mutable { return b.wait(10s); });
    int mine = b.wait(10s);
    EXPECT_EQ(std::set<int>({mine, other.get()}), (std::set<int>{0, 1}));
}

TEST_F(BarrierTest, ATimeoutBreaksTheBarrier) {
    mproc::Barrier b(2, {.timeout = 50ms});
    auto took = time_of([&] { EXPECT_THROW(b.wait(), mproc::BrokenBarrierError); });
    EXPECT_GE(took, 50ms);
    EXPECT_LT(took, 5s);
    EXPECT_TRUE(b.broken());
    b.reset();
    EXPECT_THROW(b.wait(0s), mproc::BrokenBarrierError);  // an explicit timeout overrides the default
}

TEST_F(BarrierTest, AnActionThatThrowsBreaksTheBarrier) {
    mproc::Barrier b(2, {.action = [] { throw std::runtime_error("action failed"); }});
    auto other = std::async(std::launch::async, [b]() mutable {
        try {
            b.wait(10s);
        } catch (const mproc::BrokenBarrierError&) {
            return std::string("broken");
        } catch (const std::runtime_error& e) {
            return std::string(e.what());
        }
        return std::string("passed");
    });
    std::string mine;
    try {
        b.wait(10s);
        mine = "passed";
    } catch (const mproc::BrokenBarrierError&) {
        mine = "broken";
    } catch (const std::runtime_error& e) {
        mine = e.what();
    }
    EXPECT_EQ(std::multiset<std::string>({mine, other.get()}), (std::multiset<std::string>{"action failed", "broken"}));
    EXPECT_TRUE(b.broken());
}

TEST_F(BarrierTest, BadPartiesAreAUsageError) {
    EXPECT_THROW(mproc::Barrier(0), mproc::UsageError);
    EXPECT_THROW(mproc::Barrier(-3), mproc::UsageError);
}

// ---------------------------------------------------------------------------------------------
// Owner death (a thread that ends holding a lock; processes are in the fault suite)

TEST_F(OwnerDied, NextAcquirerGetsTheLockAndTheNews) {
    mproc::Lock lock;
    std::thread([lock]() mutable { lock.acquire(); }).join();  // ends holding it
    EXPECT_EQ(lock.repr(), "<Lock(owner=None)>");  // the kernel cleared the dead owner
    bool told = false;
    try {
        lock.acquire(true, 5s);
    } catch (const mproc::OwnerDiedError& e) {
        told = true;
        EXPECT_TRUE(e.holds_lock());
        EXPECT_EQ(lock.repr(), "<Lock(owner=MainProcess)>");
        EXPECT_FALSE(on_other_thread([lock]() mutable { return lock.try_lock(); }));
        EXPECT_NE(std::string(e.what()).find("died while holding it"), std::string::npos);
    }
    EXPECT_TRUE(told);
    // The handler ended: the exception released the lock; it works as before.
    EXPECT_EQ(lock.repr(), "<Lock(owner=None)>");
    EXPECT_TRUE(lock.acquire(true, 1s));
    lock.release();
}

TEST_F(OwnerDied, ScopedLockUsersRepairUnderTheLock) {
    mproc::Value<int, mproc::Lock> value(0);
    std::thread([value]() mutable {
        value.get_lock().acquire();
        value.value() = -1;  // half-way through an update
    }).join();
    int repaired = 0;
    for (int attempt = 0; attempt < 2; ++attempt) {
        try {
            std::scoped_lock guard(value.get_lock());
            value.value() += 1;
        } catch (const mproc::OwnerDiedError& e) {
            EXPECT_TRUE(e.holds_lock());
            value.value() = 100;  // under the lock
            ++repaired;
        }
    }
    EXPECT_EQ(repaired, 1);
    EXPECT_EQ(value.load(), 101);
}

TEST_F(OwnerDied, KeepLockHandsTheHoldOverAndManualReleaseEndsIt) {
    mproc::Lock lock;
    std::thread([lock]() mutable { lock.acquire(); }).join();
    try {
        lock.acquire();
    } catch (const mproc::OwnerDiedError& e) {
        e.keep_lock();
        EXPECT_FALSE(e.holds_lock());
    }
    EXPECT_EQ(lock.repr(), "<Lock(owner=MainProcess)>");  // still held: kept
    lock.release();

    std::thread([lock]() mutable { lock.acquire(); }).join();
    try {
        lock.acquire();
    } catch (const mproc::OwnerDiedError& e) {
        lock.release();  // by hand, inside the handler
        EXPECT_FALSE(e.holds_lock());
        EXPECT_TRUE(lock.acquire(false));  // taken again by this thread: the exception must not release it
    }
    EXPECT_EQ(lock.repr(), "<Lock(owner=MainProcess)>");
    lock.release();
}

TEST_F(OwnerDied, RLockRecoversWithOneLevel) {
    mproc::RLock lock;
    std::thread([lock]() mutable {
        lock.acquire();
        lock.acquire();
        lock.acquire();
    }).join();
    try {
        lock.acquire();
        ADD_FAILURE() << "no OwnerDiedError";
    } catch (const mproc::OwnerDiedError& e) {
        EXPECT_EQ(lock.repr(), "<RLock(MainProcess, 1)>");
        e.keep_lock();
    }
    lock.release();
    EXPECT_EQ(lock.repr(), "<RLock(None, 0)>");
}

TEST_F(OwnerDied, ValueLoadTellsAndHoldsTheLock) {
    mproc::Value<long> v(7);
    std::thread([v] { v.get_lock().acquire(); }).join();
    EXPECT_THROW(v.load(), mproc::OwnerDiedError);
    EXPECT_EQ(v.load(), 7);
    v.store(8);
    EXPECT_EQ(v.load(), 8);
}

TEST_F(OwnerDied, ConditionWaiterGetsTheNewsWithTheLockHeld) {
    mproc::Lock lock;
    mproc::Condition c(lock);
    std::atomic<bool> waiting{false};
    auto waiter = std::async(std::launch::async, [c, &waiting]() mutable {
        std::unique_lock guard(c);
        waiting = true;
        try {
            c.wait(10s);
        } catch (const mproc::OwnerDiedError& e) {
            return !e.holds_lock() && guard.owns_lock();
        }
        return false;
    });
    while (!waiting) std::this_thread::sleep_for(1ms);
    std::thread([c]() mutable {
        c.acquire();  // the waiter released it to wait
        c.notify();
    }).join();        // ... and this thread ends holding it
    EXPECT_TRUE(waiter.get());
    EXPECT_TRUE(lock.acquire(true, 1s));  // the waiter's guard released it normally
    lock.release();
}

// ---------------------------------------------------------------------------------------------
// Value, Array, RawValue, RawArray

namespace {
struct Point {
    double x = 1.5;
    int y = 2;
};
}  // namespace

TEST_F(SharedValues, ValueLoadStoreAndLock) {
    mproc::Value<long> v(5);
    EXPECT_EQ(v.load(), 5);
    v.store(6);
    EXPECT_EQ(v.value(), 6);
    {
        std::scoped_lock guard(v.get_lock());
        v.value() += 1;
        EXPECT_EQ(v.load(), 7);  // the default lock is an RLock, as in Python: re-entrant
    }
    static_assert(std::is_same_v<decltype(v.get_lock()), mproc::RLock&>);
    EXPECT_EQ(v.get_lock().repr(), "<RLock(None, 0)>");
    {
        std::scoped_lock guard(v);  // Lockable over its lock
        EXPECT_EQ(v.get_lock().repr(), "<RLock(MainProcess, 1)>");
    }
    mproc::RawValue<long> raw = v.get_obj();
    raw.value() = 42;
    EXPECT_EQ(v.load(), 42);
    mproc::Value<Point> p;
    EXPECT_EQ(p.load().x, 1.5);
    EXPECT_EQ(p.load().y, 2);
    mproc::Value<int> zero;
    EXPECT_EQ(zero.load(), 0);
}

TEST_F(SharedValues, ValueSharesAGivenLock) {
    mproc::Lock lock;
    mproc::Value<int, mproc::Lock> a(1, lock);
    mproc::Value<int, mproc::Lock> b(2, lock);
    lock.acquire();
    EXPECT_FALSE(b.try_lock());
    EXPECT_FALSE(a.acquire(false));
    lock.release();
    EXPECT_TRUE(a.acquire(false));
    a.release();
}

TEST_F(SharedValues, ArrayIndexingAndBounds) {
    mproc::Array<int> a(4);
    EXPECT_EQ(a.size(), 4U);
    for (int x : a) EXPECT_EQ(x, 0);
    a.store(2, 9);
    EXPECT_EQ(a.load(2), 9);
    a[3] = 4;
    EXPECT_EQ(a.load(3), 4);
    EXPECT_THROW(a.load(4), mproc::UsageError);
    EXPECT_THROW(a.store(100, 1), mproc::UsageError);
    mproc::Array<double> b{1.0, 2.0, 3.0};
    EXPECT_EQ(b.size(), 3U);
    EXPECT_EQ(b.span()[1], 2.0);
    std::vector<short> source{5, 6, 7, 8, 9};
    mproc::RawArray<short> r(source);
    EXPECT_EQ(std::vector<short>(r.begin(), r.end()), source);
    mproc::RawArray<Point> points(3);
    EXPECT_EQ(points[2].y, 2);
    mproc::RawArray<char> empty(std::size_t{0});
    EXPECT_TRUE(empty.empty());
    mproc::RawArray<int> shared = a.get_obj();
    shared[0] = 11;
    EXPECT_EQ(a.load(0), 11);
}

TEST_F(SharedValues, LargeArraysGetTheirOwnSegment) {
    const int before = mproc::testing::count_open_fds();
    {
        mproc::RawArray<double> big(1 << 20);  // 8 MiB
        big[(1 << 20) - 1] = 3.0;
        EXPECT_EQ(big[(1 << 20) - 1], 3.0);
        EXPECT_EQ(mproc::testing::count_open_fds(), before + 1);
    }
    EXPECT_EQ(mproc::testing::count_open_fds(), before);
}

// ---------------------------------------------------------------------------------------------
// The memory underneath

TEST_F(SharedSegments, SmallPrimitivesShareArenas) {
    const int before = mproc::testing::count_open_fds();
    {
        std::vector<mproc::Lock> locks(3000);
        std::vector<mproc::Event> events(1000);
        // 4000 primitives, one cache line each (plus headers) in 64 KiB arenas: a handful of
        // descriptors, not thousands.
        EXPECT_LE(mproc::testing::count_open_fds() - before, 10);
        for (auto& l : locks) {
            l.acquire();
            l.release();
        }
    }
    EXPECT_EQ(mproc::testing::count_open_fds(), before);
}

TEST_F(SharedSegments, SegmentsAreSealedAgainstShrinking) {
    auto block = mproc::detail::allocate_shared_block(mproc::detail::BlockKind::value, 64, 8);
    const int fd = mproc::detail::shared_block_descriptor(block);
    EXPECT_EQ(::ftruncate(fd, 0), -1);
    EXPECT_EQ(errno, EPERM);
    struct stat st {};
    ASSERT_EQ(::fstat(fd, &st), 0);
    EXPECT_GT(st.st_size, 0);
}

TEST_F(SharedSegments, ImportChecksKindSizeAndBounds) {
    auto block = mproc::detail::allocate_shared_block(mproc::detail::BlockKind::event, 8, 8);
    const int fd = mproc::detail::shared_block_descriptor(block);
    const auto offset = mproc::detail::shared_block_offset(block);
    auto import = [&](std::uint64_t off, mproc::detail::BlockKind kind, std::uint64_t size) {
        return mproc::detail::import_shared_block(::dup(fd), off, kind, size);
    };
    auto same = import(offset, mproc::detail::BlockKind::event, mproc::detail::shared_block_size(block));
    EXPECT_EQ(same.payload(), block.payload());  // one mapping per segment and process
    EXPECT_THROW(import(offset, mproc::detail::BlockKind::mutex, 8), mproc::DecodeError);
    EXPECT_THROW(import(offset, mproc::detail::BlockKind::event, 4096), mproc::DecodeError);
    EXPECT_THROW(import(1 << 30, mproc::detail::BlockKind::event, 8), mproc::DecodeError);
    EXPECT_THROW(import(offset + 64, mproc::detail::BlockKind::event, 8), mproc::DecodeError);
    // A descriptor that is not a sealed segment.
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    ::close(pipe_fds[1]);
    EXPECT_THROW(mproc::detail::import_shared_block(pipe_fds[0], 64, mproc::detail::BlockKind::event, 8),
                 mproc::DecodeError);
    int unsealed = ::memfd_create("unsealed", MFD_CLOEXEC);
    ASSERT_GE(unsealed, 0);
    ASSERT_EQ(::ftruncate(unsealed, 65536), 0);
    EXPECT_THROW(mproc::detail::import_shared_block(unsealed, 128, mproc::detail::BlockKind::event, 8),
                 mproc::DecodeError);
}

// ---------------------------------------------------------------------------------------------
// SharedMemory within one process (other processes: conformance and fault suites)

TEST_F(SharedMemoryTest, CreateAttachAndShareBytes) {
    mproc::SharedMemory created({.create = true, .size = 10});
    EXPECT_TRUE(std::regex_match(created.name(), std::regex("psm_[0-9a-f]{8}"))) << created.name();
    EXPECT_EQ(created.size(), 10U);
    EXPECT_EQ(created.buf().size(), 10U);
    EXPECT_EQ(created.repr(), "SharedMemory('" + created.name() + "', size=10)");
    EXPECT_TRUE(mproc::testing::shm_exists(created.name()));
    std::memcpy(created.buf().data(), "hello", 5);
    mproc::SharedMemory attached({.name = created.name()});
    EXPECT_EQ(attached.size(), 10U);
    EXPECT_EQ(std::memcmp(attached.buf().data(), "hello", 5), 0);
    mproc::SharedMemory with_slash({.name = "/" + created.name()});
    EXPECT_EQ(with_slash.name(), created.name());
    created.close();
    created.close();  // idempotent
    EXPECT_TRUE(created.closed());
    EXPECT_THROW(created.buf(), mproc::UsageError);
    EXPECT_TRUE(mproc::testing::shm_exists(attached.name())) << "removed while still attached";
    const std::string name = attached.name();
    attached.close();
    with_slash.close();
    // As in Python, closing every handle leaves the name (this process may attach again)...
    EXPECT_TRUE(mproc::testing::shm_exists(name)) << "closing removed the name";
    mproc::SharedMemory again({.name = name});
    EXPECT_EQ(std::memcmp(again.buf().data(), "hello", 5), 0);
    again.close();
    // ...and unlink() after close() removes it (Python's documented order).
    created.unlink();
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

TEST_F(SharedMemoryTest, CloseThenUnlinkWorksInEveryOrderOfTheHandles) {
    for (int order = 0; order < 3; ++order) {
        mproc::SharedMemory creator({.create = true, .size = 64});
        mproc::SharedMemory attacher({.name = creator.name()});
        const std::string name = creator.name();
        if (order == 0) {
            attacher.close();
            creator.close();
            creator.unlink();
        } else if (order == 1) {
            creator.close();
            attacher.close();
            creator.unlink();
        } else {
            creator.close();
            attacher.unlink();  // any handle may unlink, open or closed
            attacher.close();
        }
        EXPECT_FALSE(mproc::testing::shm_exists(name)) << "order " << order;
        EXPECT_THROW_MESSAGE(creator.unlink(), mproc::OSError,
                             ("unlinking shared memory '" + name + "': No such file or directory").c_str());
    }
}

TEST_F(SharedMemoryTest, ErrorsNameTheOperationThatFailed) {
    const std::string missing = "mproc_test_missing_" + std::to_string(::getpid());
    EXPECT_THROW_MESSAGE(mproc::SharedMemory({.name = missing}), mproc::OSError,
                         ("attaching shared memory '" + missing + "': No such file or directory").c_str());
    mproc::SharedMemory first({.name = missing, .create = true, .size = 4});
    EXPECT_THROW_MESSAGE(mproc::SharedMemory({.name = missing, .create = true, .size = 4}), mproc::OSError,
                         ("creating shared memory '" + missing + "': File exists").c_str());
    EXPECT_THROW_MESSAGE(mproc::SharedMemory({.name = "a/b", .create = true, .size = 4}), mproc::OSError,
                         "creating shared memory 'a/b' (not a valid name): Invalid argument");
    EXPECT_THROW_MESSAGE(mproc::SharedMemory({.name = "a/b"}), mproc::OSError,
                         "attaching shared memory 'a/b' (not a valid name): Invalid argument");
    first.unlink();
    EXPECT_THROW_MESSAGE(first.unlink(), mproc::OSError,
                         ("unlinking shared memory '" + missing + "': No such file or directory").c_str());
    first.close();
    EXPECT_THROW_MESSAGE(first.unlink(), mproc::OSError,
                         ("unlinking shared memory '" + missing + "': No such file or directory").c_str());
    EXPECT_THROW_MESSAGE(mproc::SharedMemory().unlink(), mproc::UsageError, "this SharedMemory has no name");
}

TEST_F(SharedMemoryTest, BadArgumentsArePythonsErrors) {
    EXPECT_THROW_MESSAGE(mproc::SharedMemory({.create = true, .size = -1}), mproc::UsageError,
                         "'size' must be a positive integer");
    EXPECT_THROW_MESSAGE(mproc::SharedMemory({.create = true, .size = 0}), mproc::UsageError,
                         "'size' must be a positive number different from zero");
    EXPECT_THROW_MESSAGE(mproc::SharedMemory({.create = false}), mproc::UsageError,
                         "'name' can only be None if create=True");
    try {
        mproc::SharedMemory missing({.name = "mproc_test_no_such_segment"});
        ADD_FAILURE() << "attached a missing name";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    }
    mproc::SharedMemory first({.name = "mproc_test_exists_" + std::to_string(::getpid()), .create = true, .size = 4});
    try {
        mproc::SharedMemory second({.name = first.name(), .create = true, .size = 4});
        ADD_FAILURE() << "created an existing name";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::file_exists);
    }
    first.unlink();
    EXPECT_THROW(mproc::SharedMemory({.name = "a/b", .create = true, .size = 4}), mproc::OSError);
}

TEST_F(SharedMemoryTest, UnlinkRemovesTheNameAtOnceOnlyOnce) {
    mproc::SharedMemory shm({.create = true, .size = 100});
    mproc::SharedMemory other({.name = shm.name()});
    shm.buf()[0] = std::byte{7};
    shm.unlink();
    EXPECT_FALSE(mproc::testing::shm_exists(shm.name()));
    EXPECT_EQ(other.buf()[0], std::byte{7});  // mappings stay valid
    try {
        other.unlink();
        ADD_FAILURE() << "unlinked twice";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    }
    try {
        mproc::SharedMemory gone({.name = shm.name()});
        ADD_FAILURE() << "attached an unlinked name";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    }
}

TEST_F(SharedMemoryTest, UntrackedSegmentsStayUntilUnlinked) {
    std::string name;
    {
        mproc::SharedMemory shm({.create = true, .size = 8, .track = false});
        name = shm.name();
        EXPECT_FALSE(shm.tracked());
        mproc::SharedMemory user({.name = name});  // tracked attachment of an untracked segment
    }
    EXPECT_TRUE(mproc::testing::shm_exists(name));
    EXPECT_EQ(mproc::sweep_shared_memory(), 0);
    EXPECT_TRUE(mproc::testing::shm_exists(name));
    mproc::SharedMemory again({.name = name});
    again.unlink();
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

TEST_F(SharedMemoryTest, AnUntrackedAttacherDoesNotKeepATrackedSegment) {
    // The creator, a child, ends without unlinking: as the last user, its exit removes the name,
    // whatever this process's untracked handle does.
    const std::string name = "mproc_test_untracked_observer_" + std::to_string(::getpid());
    mproc::Event created;
    mproc::Event attached;
    auto creator = mproc::fork_context.Process(
        [](std::string segment, mproc::Event made, mproc::Event observed) {
            mproc::SharedMemory shm({.name = segment, .create = true, .size = 8});
            made.set();
            if (!observed.wait(20s)) mproc::exit(1);
        },
        name, created, attached);
    creator.start();
    ASSERT_TRUE(created.wait(20s));
    mproc::SharedMemory observer({.name = name, .track = false});
    attached.set();
    creator.join();
    EXPECT_EQ(creator.exitcode(), 0);
    EXPECT_FALSE(mproc::testing::shm_exists(name)) << "an untracked handle kept the segment";
    observer.buf()[0] = std::byte{1};  // still mapped
}

TEST_F(SharedMemoryTest, ForeignSegmentsAreUsedAsTheyAreAndNeverRemoved) {
    // A segment made by someone else (Python, say): no trailer, so no counting.
    const std::string name = "mproc_test_foreign_" + std::to_string(::getpid());
    const int fd = ::open(("/dev/shm/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 4096), 0);
    ASSERT_EQ(::pwrite(fd, "python", 6, 0), 6);
    ::close(fd);
    {
        mproc::SharedMemory shm({.name = name});
        EXPECT_EQ(shm.size(), 4096U);
        EXPECT_EQ(std::memcmp(shm.buf().data(), "python", 6), 0);
    }
    EXPECT_EQ(mproc::sweep_shared_memory(), 0);
    EXPECT_TRUE(mproc::testing::shm_exists(name));
    ::unlink(("/dev/shm/" + name).c_str());
}

TEST_F(SharedMemoryTest, TravelsByName) {
    mproc::SharedMemory shm({.create = true, .size = 16});
    shm.buf()[3] = std::byte{3};
    auto bytes = mproc::dumps(shm);
    auto copy = mproc::loads<mproc::SharedMemory>(bytes);
    EXPECT_EQ(copy.name(), shm.name());
    EXPECT_EQ(copy.size(), 16U);
    EXPECT_EQ(copy.buf()[3], std::byte{3});
    shm.unlink();
}

// ---------------------------------------------------------------------------------------------
// Contexts carry the factories, as Python's do

TEST_F(SharedValues, ContextsCarryTheFactories) {
    const mproc::Context& ctx = mproc::get_context("spawn");
    mproc::Lock lock = ctx.Lock();
    mproc::RLock rlock = ctx.RLock();
    EXPECT_EQ(ctx.Condition(lock).repr(), "<Condition(<Lock(owner=None)>, 0)>");
    EXPECT_EQ(ctx.Condition().repr(), "<Condition(<RLock(None, 0)>, 0)>");
    EXPECT_EQ(ctx.Semaphore(3).get_value(), 3);
    EXPECT_EQ(ctx.BoundedSemaphore(2).repr(), "<BoundedSemaphore(value=2, maxvalue=2)>");
    EXPECT_FALSE(ctx.Event().is_set());
    EXPECT_EQ(ctx.Barrier(4).parties(), 4);
    EXPECT_EQ(ctx.Value<long>(3).load(), 3);
    EXPECT_EQ(ctx.RawValue<double>(1.5).value(), 1.5);
    EXPECT_EQ(ctx.Array<int>(7).size(), 7U);
    EXPECT_EQ(mproc::spawn_context.RawArray<char>(5).size(), 5U);
    EXPECT_TRUE(rlock.acquire(false));
    rlock.release();
}
