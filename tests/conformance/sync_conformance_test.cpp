// Synchronization primitives, shared values and named shared memory between processes, once per
// start method: each object handed to a child as a Process argument is the same object there
// (inherited under fork, sent as a descriptor under spawn and forkserver). Children report through
// their exit codes, so every target here can travel (functions, lambdas without captures).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sharedctypes.hpp"
#include "mproc/synchronize.hpp"

using namespace std::chrono_literals;
using mproc::StartMethod;

namespace {

class SyncConformance : public mproc::testing::PerStartMethodTest {
protected:
    SyncConformance() : PerStartMethodTest("a sync conformance test") {}
};

void add_under_lock(mproc::Value<long> counter, int times) {
    for (int i = 0; i < times; ++i) {
        std::scoped_lock guard(counter.get_lock());
        counter.value() += 1;
    }
}

void try_lock_briefly(mproc::Lock lock, mproc::Event tried) {
    const bool got = lock.acquire(true, 100ms);
    tried.set();
    if (got) lock.release();
    mproc::exit(got ? 1 : 0);
}

void hold_until(mproc::RLock rlock, mproc::Lock lock, mproc::Event held, mproc::Event done) {
    rlock.acquire();
    rlock.acquire();
    lock.acquire();
    held.set();
    const bool finished = done.wait(20s);
    lock.release();
    rlock.release();
    rlock.release();
    mproc::exit(finished ? 0 : 1);
}

void ping_pong(mproc::Event ping, mproc::Event pong, int rounds) {
    for (int i = 0; i < rounds; ++i) {
        if (!ping.wait(10s)) mproc::exit(1);
        ping.clear();
        pong.set();
    }
}

void wait_for_flag(mproc::Condition cond, mproc::Value<int> flag, mproc::Event waiting) {
    std::unique_lock guard(cond);
    waiting.set();
    const bool seen = cond.wait_for([&] { return flag.value() == 1; }, 20s);
    mproc::exit(seen ? 0 : 1);
}

void over_release(mproc::BoundedSemaphore sem, mproc::Semaphore counter) {
    if (!sem.acquire(true, 5s)) mproc::exit(1);
    sem.release();
    counter.release();
    try {
        sem.release();
    } catch (const mproc::UsageError&) {
        mproc::exit(0);
    }
    mproc::exit(2);
}

std::string action_marker(int main_pid) { return "/tmp/mproc-barrier-action-" + std::to_string(main_pid); }

void record_barrier_action() {
    const auto parent = mproc::parent_process();
    const int main_pid = parent ? *parent->pid() : ::getpid();
    std::ofstream(action_marker(main_pid), std::ios::app) << 'x';
}

void meet_at_barrier(mproc::Barrier barrier) { mproc::exit(10 + barrier.wait(20s)); }

void fill_squares(mproc::Array<int> squares, mproc::RawArray<double> halves, mproc::RawValue<long> total) {
    long sum = 0;
    for (std::size_t i = 0; i < squares.size(); ++i) {
        squares.store(i, static_cast<int>(i * i));
        halves[i] = static_cast<double>(i) / 2;
        sum += static_cast<long>(i * i);
    }
    total.value() = sum;
}

void write_to_shared_memory(mproc::SharedMemory shm, std::string text) {
    if (shm.size() < text.size()) mproc::exit(1);
    std::memcpy(shm.buf().data(), text.data(), text.size());
}

void use_after_creator_let_go(mproc::Value<long> value, mproc::Event go) {
    if (!go.wait(20s)) mproc::exit(1);
    value.store(value.load() + 1);
    mproc::exit(static_cast<int>(value.load()));
}

void die_holding(mproc::Lock lock, mproc::RLock rlock) {
    lock.acquire();
    rlock.acquire();
    rlock.acquire();
    ::_exit(0);  // no release, no exit sequence
}

void set_all(std::vector<mproc::Event> events) {
    for (auto& e : events) e.set();
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(StartMethods, SyncConformance,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         mproc::testing::start_method_name);

TEST_P(SyncConformance, LockedIncrementsFromSeveralProcessesAreExact) {
    mproc::Value<long> counter(0);
    auto a = started(add_under_lock, counter, 3000);
    auto b = started(add_under_lock, counter, 3000);
    add_under_lock(counter, 3000);
    EXPECT_EQ(joined(a), 0);
    EXPECT_EQ(joined(b), 0);
    EXPECT_EQ(counter.load(), 9000);
}

TEST_P(SyncConformance, ALockHeldByTheParentTimesOutInTheChild) {
    mproc::Lock lock;
    mproc::Event tried;
    lock.acquire();
    auto p = started(try_lock_briefly, lock, tried);
    EXPECT_EQ(joined(p), 0) << "the child got a lock the parent holds";
    EXPECT_TRUE(tried.is_set());
    lock.release();
    auto q = started(try_lock_briefly, lock, mproc::Event());
    EXPECT_EQ(joined(q), 1) << "the child could not take a free lock";
}

TEST_P(SyncConformance, ReprsSeeAnOwnerInAnotherProcess) {
    mproc::RLock rlock;
    mproc::Lock lock;
    mproc::Event held, done;
    auto p = started(hold_until, rlock, lock, held, done);
    ASSERT_TRUE(held.wait(20s));
    EXPECT_EQ(rlock.repr(), "<RLock(SomeOtherProcess, nonzero)>");
    EXPECT_EQ(lock.repr(), "<Lock(owner=SomeOtherProcess)>");
    EXPECT_FALSE(lock.acquire(false));
    EXPECT_THROW(lock.release(), mproc::UsageError);  // not ours to release
    done.set();
    EXPECT_EQ(joined(p), 0);
    EXPECT_EQ(rlock.repr(), "<RLock(None, 0)>");
    EXPECT_EQ(lock.repr(), "<Lock(owner=None)>");
}

TEST_P(SyncConformance, EventsPingPong) {
    mproc::Event ping, pong;
    auto p = started(ping_pong, ping, pong, 50);
    for (int i = 0; i < 50; ++i) {
        ping.set();
        ASSERT_TRUE(pong.wait(10s)) << "round " << i;
        pong.clear();
    }
    EXPECT_EQ(joined(p), 0);
}

TEST_P(SyncConformance, ConditionNotifiesAnotherProcess) {
    mproc::Condition cond;
    mproc::Value<int> flag(0);
    mproc::Event waiting;
    auto p = started(wait_for_flag, cond, flag, waiting);
    ASSERT_TRUE(waiting.wait(20s));
    {
        std::unique_lock guard(cond);
        flag.value() = 1;
        cond.notify_all();
    }
    EXPECT_EQ(joined(p), 0);
}

TEST_P(SyncConformance, SemaphoresCountAcrossProcesses) {
    mproc::BoundedSemaphore sem(1);
    mproc::Semaphore counter(0);
    auto p = started(over_release, sem, counter);
    EXPECT_EQ(joined(p), 0) << "the child's over-release was not refused";
    EXPECT_TRUE(counter.acquire(false));
    EXPECT_EQ(counter.get_value(), 0);
    EXPECT_EQ(sem.get_value(), 1);
}

TEST_P(SyncConformance, BarrierReleasesThreeProcessesAndRunsItsActionOnce) {
    const std::string marker = action_marker(::getpid());
    std::remove(marker.c_str());
    mproc::Barrier barrier(3, {.action = record_barrier_action});
    auto a = started(meet_at_barrier, barrier);
    auto b = started(meet_at_barrier, barrier);
    const int mine = barrier.wait(20s);
    std::set<int> indices{mine, joined(a) - 10, joined(b) - 10};
    EXPECT_EQ(indices, (std::set<int>{0, 1, 2}));
    std::ifstream in(marker);
    std::string runs;
    std::getline(in, runs);
    EXPECT_EQ(runs, "x") << "the action ran " << runs.size() << " times";
    std::remove(marker.c_str());
}

TEST_P(SyncConformance, ABarrierActionThatCannotTravelIsAUsageErrorExceptUnderFork) {
    int captured = 3;
    mproc::Barrier barrier(2, {.action = [captured] { (void)captured; }});
    mproc::Process p(meet_at_barrier, barrier);
    if (GetParam() != StartMethod::fork) {
        EXPECT_THROW(p.start(), mproc::UsageError);
        return;
    }
    // Under fork the child inherits the action with the address space: the barrier works.
    p.start();
    const int mine = barrier.wait(20s);
    EXPECT_EQ(joined(p) - 10, 1 - mine);  // the two parties got the two indices
}

TEST_P(SyncConformance, ArraysAndRawValuesAreSharedMemory) {
    mproc::Array<int> squares(50);
    mproc::RawArray<double> halves(50);
    mproc::RawValue<long> total(-1);
    auto p = started(fill_squares, squares, halves, total);
    EXPECT_EQ(joined(p), 0);
    long sum = 0;
    for (std::size_t i = 0; i < 50; ++i) {
        EXPECT_EQ(squares.load(i), static_cast<int>(i * i));
        EXPECT_EQ(halves[i], static_cast<double>(i) / 2);
        sum += static_cast<long>(i * i);
    }
    EXPECT_EQ(total.value(), sum);
}

TEST_P(SyncConformance, SharedMemoryTravelsByName) {
    const std::string text = "written by the child";
    mproc::SharedMemory shm({.create = true, .size = 64});
    {
        auto p = started(write_to_shared_memory, shm, text);
        EXPECT_EQ(joined(p), 0);
    }  // the Process object holds a copy of its arguments, a handle among them
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(shm.buf().data()), text.size()), text);
    const std::string name = shm.name();
    shm.close();
    EXPECT_TRUE(mproc::testing::shm_exists(name)) << "close() removed the name (Python keeps it)";
    shm.unlink();  // Python's order: close(), then unlink()
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

TEST_P(SyncConformance, ObjectsOutliveTheirCreatorsHandles) {
    mproc::Value<long> value(41);
    mproc::Event go;
    auto p = started(use_after_creator_let_go, value, go);
    value = mproc::Value<long>(0);  // the creator lets go of its handle: the child's keeps the memory
    go.set();
    EXPECT_EQ(joined(p), 42);
}

TEST_P(SyncConformance, AChildThatDiesHoldingLocksIsReportedToTheNextAcquirer) {
    mproc::Lock lock;
    mproc::RLock rlock;
    auto p = started(die_holding, lock, rlock);
    EXPECT_EQ(joined(p), 0);
    for (int which = 0; which < 2; ++which) {
        bool told = false;
        try {
            if (which == 0) {
                std::scoped_lock guard(lock);
            } else {
                std::scoped_lock guard(rlock);
            }
        } catch (const mproc::OwnerDiedError& e) {
            told = e.holds_lock();
        }
        EXPECT_TRUE(told) << (which == 0 ? "Lock" : "RLock");
    }
    EXPECT_TRUE(lock.acquire(false));
    lock.release();
    EXPECT_EQ(rlock.repr(), "<RLock(None, 0)>");
}

TEST_P(SyncConformance, ContainersOfPrimitivesTravel) {
    std::vector<mproc::Event> events(3);
    auto p = started(set_all, events);
    EXPECT_EQ(joined(p), 0);
    for (auto& e : events) EXPECT_TRUE(e.is_set());
}
