// Faults the synchronization primitives must survive (spec/faults.md rows 5, 6, 8, 16): lock
// holders and waiters killed with SIGKILL, again and again at random moments; stopped holders;
// dead Event, Condition, Semaphore and Barrier participants; signal storms during waits. Every
// test runs under a watchdog and checks that no descriptor, /dev/shm entry or child is left.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"

using namespace std::chrono_literals;
using mproc::testing::eventually;
using mproc::testing::time_of;
using mproc::testing::wait_until_blocked;

namespace {

class SyncFaults : public mproc::testing::LeakCheckedTest {
protected:
    SyncFaults() : LeakCheckedTest("a sync fault test", true) {}
};

// Waits until every child in `children` sleeps in a futex wait (blocked in the primitive).
bool all_blocked(std::vector<mproc::Process>& children) {
    for (auto& c : children)
        if (!wait_until_blocked(*c.pid())) return false;
    return true;
}

void kill_and_reap(mproc::Process& p) {
    p.kill();
    p.join();
}

// Takes and gives back the lock for ever, flagging the moments it is inside.
void churn(mproc::Lock lock, mproc::RawValue<int> inside, mproc::RawValue<long> rounds) {
    for (;;) {
        lock.acquire();
        inside.value() = 1;
        ++rounds.value();
        inside.value() = 0;
        lock.release();
    }
}

void block_on(mproc::Lock lock, mproc::RawValue<int> waiting) {
    ++waiting.value();
    bool got = false;
    try {
        got = lock.acquire(true, 20s);
        if (got) lock.release();
    } catch (const mproc::OwnerDiedError&) {
        // A waiter killed just after the lock was handed to it died holding it: this one got the
        // lock all the same, and is told (the exception releases it as it goes).
        got = true;
    }
    mproc::exit(got ? 0 : 1);
}

void hold_forever(mproc::Lock lock, mproc::RLock rlock, mproc::Event held) {
    lock.acquire();
    rlock.acquire();
    rlock.acquire();
    held.set();
    for (;;) ::pause();
}

void wait_on_condition(mproc::Condition cond, mproc::Event waiting) {
    std::unique_lock guard(cond);
    waiting.set();
    mproc::exit(cond.wait(20s) ? 0 : 1);
}

void wait_on_event(mproc::Event e, mproc::RawValue<int> waiting) {
    ++waiting.value();
    mproc::exit(e.wait(20s) ? 0 : 1);
}

void take_unit(mproc::Semaphore s, mproc::RawValue<int> waiting) {
    ++waiting.value();
    mproc::exit(s.acquire(true, 20s) ? 0 : 1);
}

void party(mproc::Barrier b) {
    try {
        b.wait(20s);
    } catch (const mproc::BrokenBarrierError&) {
        mproc::exit(3);
    }
    mproc::exit(0);
}

}  // namespace

// Row 5: a holder killed at a random moment, many times over. Whoever acquires next either gets
// the lock cleanly (and then the dead process was not inside) or is told the owner died.
TEST_F(SyncFaults, HoldersKilledAtRandomMomentsAreAlwaysRecoveredOrCleanlyReleased) {
    mproc::Lock lock;
    mproc::RawValue<int> inside(0);
    mproc::RawValue<long> rounds(0);
    std::mt19937 random(12345);
    std::uniform_int_distribution<int> delay_us(0, 400);
    int told = 0, clean = 0, done = 0;
    const auto budget = std::chrono::steady_clock::now() + 15s;
    // At least 200 rounds however slow a loaded machine is; up to 1000 while the budget lasts.
    for (; done < 1000 && (done < 200 || std::chrono::steady_clock::now() < budget); ++done) {
        rounds.value() = 0;
        auto child = mproc::fork_context.Process(churn, lock, inside, rounds);
        child.start();
        ASSERT_TRUE(eventually([&] { return rounds.value() > 0; })) << "round " << done;
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random)));
        kill_and_reap(child);
        try {
            ASSERT_TRUE(lock.acquire(true, 5s)) << "round " << done << ": the lock is wedged";
            EXPECT_EQ(inside.value(), 0) << "round " << done << ": acquired normally while the dead child was inside";
            ++clean;
            lock.release();
        } catch (const mproc::OwnerDiedError& e) {
            ASSERT_TRUE(e.holds_lock());
            inside.value() = 0;  // the repair, under the lock
            ++told;
        }
    }
    EXPECT_GT(told, 0) << "no kill ever landed inside the critical section in " << done << " rounds";
    std::printf("%d rounds: %d acquirers told of a dead owner, %d clean\n", done, told, clean);
}

// Row 5, waiters: processes killed while blocked in acquire never take a wake-up with them.
TEST_F(SyncFaults, WaitersKilledWhileBlockedNeverWedgeTheLock) {
    mproc::Lock lock;
    mproc::RawValue<int> waiting(0);
    std::mt19937 random(777);
    for (int round = 0; round < 40; ++round) {
        waiting.value() = 0;
        lock.acquire();
        std::vector<mproc::Process> waiters;
        for (int i = 0; i < 4; ++i) waiters.push_back(mproc::fork_context.Process(block_on, lock, waiting));
        for (auto& w : waiters) w.start();
        ASSERT_TRUE(eventually([&] { return waiting.value() == 4; }));
        ASSERT_TRUE(all_blocked(waiters)) << "round " << round << ": the waiters never blocked";
        // Kill three at random; one releases the lock to the survivor as the others die.
        std::shuffle(waiters.begin(), waiters.end(), random);
        waiters[0].kill();
        lock.release();
        waiters[1].kill();
        waiters[2].kill();
        for (int i = 0; i < 3; ++i) waiters[static_cast<std::size_t>(i)].join();
        waiters[3].join(10s);
        ASSERT_EQ(waiters[3].exitcode(), 0) << "round " << round << ": the surviving waiter never got the lock";
        ASSERT_TRUE(lock.acquire(true, 5s));
        lock.release();
    }
}

// Row 6: a stopped holder is a timeout, not a death; killed, it is a death.
TEST_F(SyncFaults, StoppedHolderTimesOutThenKilledHolderIsReported) {
    mproc::Lock lock;
    mproc::RLock rlock;
    mproc::Event held;
    auto child = mproc::fork_context.Process(hold_forever, lock, rlock, held);
    child.start();
    ASSERT_TRUE(held.wait(10s));
    ASSERT_EQ(::kill(*child.pid(), SIGSTOP), 0);
    auto took = time_of([&] {
        EXPECT_FALSE(lock.acquire(true, 200ms));
        EXPECT_FALSE(rlock.try_lock_for(100ms));
    });
    EXPECT_GE(took, 300ms);
    EXPECT_EQ(lock.repr(), "<Lock(owner=SomeOtherProcess)>");
    EXPECT_EQ(rlock.repr(), "<RLock(SomeOtherProcess, nonzero)>");
    kill_and_reap(child);  // SIGKILL ends a stopped process too
    int told = 0;
    for (int which = 0; which < 2; ++which) {
        try {
            if (which == 0) {
                std::unique_lock guard(lock, 5s);
            } else {
                std::unique_lock guard(rlock, 5s);
            }
        } catch (const mproc::OwnerDiedError& e) {
            told += e.holds_lock() ? 1 : 0;
        }
    }
    EXPECT_EQ(told, 2);
    EXPECT_EQ(rlock.repr(), "<RLock(None, 0)>");
}

// Row 8: a Condition waiter that died does not hold up notify, and the condition goes on working.
TEST_F(SyncFaults, KilledConditionWaitersDoNotBlockNotify) {
    mproc::Condition cond;
    for (int round = 0; round < 10; ++round) {
        mproc::Event waiting;
        auto doomed = mproc::fork_context.Process(wait_on_condition, cond, waiting);
        doomed.start();
        ASSERT_TRUE(waiting.wait(10s));
        // The child set `waiting` holding the lock; it lets go of the lock only inside wait(),
        // once counted as a waiter. Taking the lock here is the proof that it waits.
        { std::unique_lock guard(cond); }
        kill_and_reap(doomed);
        auto took = time_of([&] {
            std::unique_lock guard(cond);
            cond.notify_all();
        });
        EXPECT_LT(took, 1s);
        mproc::Event waiting2;
        auto survivor = mproc::fork_context.Process(wait_on_condition, cond, waiting2);
        survivor.start();
        ASSERT_TRUE(waiting2.wait(10s));
        {
            std::unique_lock guard(cond);  // the survivor waits: it released the lock
            cond.notify();
        }
        survivor.join(10s);
        ASSERT_EQ(survivor.exitcode(), 0) << "round " << round;
    }
}

// Row 8: Event.set() never blocks on waiters that died (Python's can hang forever).
TEST_F(SyncFaults, KilledEventWaitersNeverBlockSet) {
    mproc::Event e;
    mproc::RawValue<int> waiting(0);
    for (int round = 0; round < 20; ++round) {
        waiting.value() = 0;
        e.clear();
        std::vector<mproc::Process> waiters;
        for (int i = 0; i < 3; ++i) waiters.push_back(mproc::fork_context.Process(wait_on_event, e, waiting));
        for (auto& w : waiters) w.start();
        ASSERT_TRUE(eventually([&] { return waiting.value() == 3; }));
        ASSERT_TRUE(all_blocked(waiters)) << "round " << round << ": the waiters never blocked";
        waiters[0].kill();
        waiters[1].kill();
        waiters[0].join();
        waiters[1].join();
        auto took = time_of([&] { e.set(); });
        EXPECT_LT(took, 1s);
        waiters[2].join(10s);
        ASSERT_EQ(waiters[2].exitcode(), 0) << "round " << round << ": the surviving waiter was not woken";
    }
}

// A waiter woken for a unit and killed before taking it must not strand the unit.
TEST_F(SyncFaults, KilledSemaphoreWaitersDoNotStrandUnits) {
    mproc::Semaphore s(0);
    mproc::RawValue<int> waiting(0);
    for (int round = 0; round < 5; ++round) {
        waiting.value() = 0;
        std::vector<mproc::Process> waiters;
        for (int i = 0; i < 4; ++i) waiters.push_back(mproc::fork_context.Process(take_unit, s, waiting));
        for (auto& w : waiters) w.start();
        ASSERT_TRUE(eventually([&] { return waiting.value() == 4; }));
        ASSERT_TRUE(all_blocked(waiters)) << "round " << round << ": the waiters never blocked";
        s.release();
        waiters[0].kill();  // perhaps the one just woken
        waiters[1].kill();
        s.release();
        s.release();
        waiters[0].join();
        waiters[1].join();
        auto took = time_of([&] {
            waiters[2].join(10s);
            waiters[3].join(10s);
        });
        EXPECT_EQ(waiters[2].exitcode(), 0);
        EXPECT_EQ(waiters[3].exitcode(), 0);
        EXPECT_LT(took, 3s);
        while (s.acquire(false)) {
        }
    }
}

// Row 8: a party killed while waiting breaks the barrier for the others within a deadline.
TEST_F(SyncFaults, KilledBarrierPartyBreaksTheBarrierForTheOthers) {
    mproc::Barrier barrier(4);
    for (int round = 0; round < 5; ++round) {
        auto survivor = mproc::fork_context.Process(party, barrier);
        auto doomed = mproc::fork_context.Process(party, barrier);
        survivor.start();
        doomed.start();
        // Killed once all three wait (the doomed one asleep in wait()); the break is timed from then.
        std::optional<std::chrono::steady_clock::time_point> killed_at;
        std::thread killer([&] {
            if (eventually([&] { return barrier.n_waiting() == 3; }) && wait_until_blocked(*doomed.pid())) {
                killed_at = std::chrono::steady_clock::now();
                doomed.kill();
            }
        });
        std::optional<std::chrono::steady_clock::time_point> broken_at;
        try {
            barrier.wait(20s);
        } catch (const mproc::BrokenBarrierError&) {
            broken_at = std::chrono::steady_clock::now();
        }
        killer.join();
        doomed.join();
        survivor.join(10s);
        ASSERT_TRUE(killed_at.has_value()) << "round " << round << ": the parties never all waited";
        ASSERT_TRUE(broken_at.has_value()) << "round " << round;
        EXPECT_LT(*broken_at - *killed_at, 2s) << "round " << round;
        EXPECT_EQ(survivor.exitcode(), 3) << "round " << round << ": the other party was not told";
        EXPECT_TRUE(barrier.broken());
        barrier.reset();
    }
}

// A stopped party is alive: the barrier waits for it until the timeout, then breaks.
TEST_F(SyncFaults, StoppedBarrierPartyIsATimeoutNotADeath) {
    mproc::Barrier barrier(3);
    auto stopped = mproc::fork_context.Process(party, barrier);
    stopped.start();
    ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
    ASSERT_EQ(::kill(*stopped.pid(), SIGSTOP), 0);
    auto took = time_of([&] { EXPECT_THROW(barrier.wait(300ms), mproc::BrokenBarrierError); });
    EXPECT_GE(took, 300ms);
    kill_and_reap(stopped);
}

namespace {
volatile sig_atomic_t alarms = 0;
void count_alarm(int) { alarms = alarms + 1; }
}  // namespace

// Row 16: timed waits keep their deadline through a storm of signals (no SA_RESTART).
TEST_F(SyncFaults, TimedWaitsSurviveAnEintrStorm) {
    mproc::Lock lock;
    mproc::Event event;
    mproc::Condition cond;
    mproc::Semaphore sem(0);
    mproc::Barrier barrier(2);
    struct sigaction action {};
    action.sa_handler = count_alarm;
    sigemptyset(&action.sa_mask);
    struct sigaction previous {};
    ASSERT_EQ(::sigaction(SIGALRM, &action, &previous), 0);
    itimerval every_ms{{0, 1000}, {0, 1000}};
    ASSERT_EQ(::setitimer(ITIMER_REAL, &every_ms, nullptr), 0);

    std::vector<std::pair<std::string, std::chrono::nanoseconds>> waits;
    waits.emplace_back("event", time_of([&] { EXPECT_FALSE(event.wait(150ms)); }));
    waits.emplace_back("semaphore", time_of([&] { EXPECT_FALSE(sem.acquire(true, 150ms)); }));
    waits.emplace_back("condition", time_of([&] {
                           std::unique_lock guard(cond);
                           EXPECT_FALSE(cond.wait(150ms));
                       }));
    waits.emplace_back("barrier", time_of([&] { EXPECT_THROW(barrier.wait(150ms), mproc::BrokenBarrierError); }));
    lock.acquire();  // held here; another thread must wait for it
    waits.emplace_back("lock", time_of([&] {
                           std::thread other([lock]() mutable { EXPECT_FALSE(lock.acquire(true, 150ms)); });
                           other.join();
                       }));
    lock.release();

    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::sigaction(SIGALRM, &previous, nullptr);
    for (const auto& [what, took] : waits) {
        EXPECT_GE(took, 150ms) << what << " returned early";
        EXPECT_LT(took, 3s) << what << " restarted its timeout";
    }
    EXPECT_GT(alarms, 100) << "the storm did not happen";
}
