// A managed Barrier's action and default timeout (Python's Barrier(parties, action, timeout) from
// a SyncManager), and the server process's start: it ignores SIGINT, as Python's does. Under
// every start method. The port of a CPython test is named in a comment above it.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "helpers/manager_test_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/managers.hpp"

using namespace std::chrono_literals;

namespace {

using mproc_test::require;
using mproc_test::thrown_text;

// CPython's _TestBarrier.N and defaultTimeout (generous: a party never waits that long here).
constexpr int kParties = 5;
constexpr auto kDefaultTimeout = 30s;

class ManagedBarrierAction : public mproc_test::ManagerFixture {
protected:
    void SetUp() override { manager = mproc::Manager(options()); }

    // CPython's run_threads: f(args...) by each of the kParties parties.
    template <class F, class... A>
    void run_parties(F f, A... args) {
        ManagerFixture::run_parties(kParties, f, args...);
    }

    mproc::SyncManager manager;
};

MPROC_MANAGER_TESTS_UNDER_EVERY_START_METHOD(ManagedBarrierAction);

// CPython's AppendTrue: the action, holding a proxy of a managed list.
void append_true(mproc::ListProxy<bool> results) { results.append(true); }

// CPython's _test_action_f: once past the barrier, the action has run exactly once.
void wait_then_count(mproc::BarrierProxy barrier, mproc::ListProxy<bool> results) {
    barrier.wait();
    require(results.size() == 1, "the action ran once before the parties were released");
}

// CPython: _TestBarrier.test_action
TEST_P(ManagedBarrierAction, ActionRunsOnceBeforeThePartiesAreReleased) {
    auto results = manager.list<bool>();
    auto barrier = manager.Barrier(kParties, {append_true, results});
    run_parties(wait_then_count, barrier, results);
    EXPECT_EQ(results.size(), 1u);
}

// Each party passes `cycles` times; after pass i the action has run i + 1 times (it cannot have
// run again: that needs this party at the next wait).
void pass_cycles(mproc::BarrierProxy barrier, mproc::ListProxy<bool> results, int cycles) {
    for (int i = 0; i < cycles; ++i) {
        barrier.wait();
        require(results.size() == static_cast<std::size_t>(i + 1), "one action per cycle, before the release");
    }
}

TEST_P(ManagedBarrierAction, ActionRunsOncePerCycle) {
    auto results = manager.list<bool>();
    auto barrier = manager.Barrier(kParties, {append_true, results});
    run_parties(pass_cycles, barrier, results, 3);
    EXPECT_EQ(results.size(), 3u);
    EXPECT_FALSE(barrier.broken());
}

void append_pid(mproc::ListProxy<int> pids) { pids.append(static_cast<int>(::getpid())); }

TEST_P(ManagedBarrierAction, ActionRunsInTheServerProcess) {
    auto pids = manager.list<int>();
    auto barrier = manager.Barrier(1, {append_pid, pids});
    EXPECT_EQ(barrier.wait(), 0);
    EXPECT_EQ(pids.copy(), std::vector<int>{*manager.process()->pid()});
}

TEST_P(ManagedBarrierAction, ALambdaWithoutCapturesIsAnAction) {
    auto results = manager.list<bool>();
    auto barrier = manager.Barrier(2, {[](mproc::ListProxy<bool> r) { r.append(true); }, results});
    auto other = child_process([](mproc::BarrierProxy b) { b.wait(); }, barrier);
    other.start();
    barrier.wait();
    other.join();
    EXPECT_EQ(other.exitcode(), 0);
    EXPECT_EQ(results.size(), 1u);
}

// The barrier holds the action's proxies: the list lives on after the client's proxy is gone, as
// Python's AppendTrue keeps its list, and goes with the barrier.
TEST_P(ManagedBarrierAction, TheActionKeepsItsProxiesObjectsAlive) {
    mproc::BarrierProxy barrier;
    {
        auto results = manager.list<bool>();
        barrier = manager.Barrier(1, {append_true, results});
    }
    EXPECT_EQ(manager.number_of_objects(), 2u);
    EXPECT_EQ(barrier.wait(), 0);  // the action appends to the list: no ReferenceError
    EXPECT_EQ(barrier.wait(), 0);
    barrier = mproc::BarrierProxy();
    EXPECT_EQ(manager.number_of_objects(), 0u);
}

void refuse() { throw mproc::ValueError("the action refuses"); }
void out_of_cheese() { throw std::runtime_error("out of cheese"); }

// Waits once and notes how it went.
void wait_and_note(mproc::BarrierProxy barrier, mproc::ListProxy<std::string> outcomes) {
    try {
        barrier.wait();
        outcomes.append("passed");
    } catch (const mproc::BrokenBarrierError&) {
        outcomes.append("broken");
    } catch (const mproc::ValueError& e) {
        outcomes.append(std::string("ValueError: ") + e.what());
    } catch (const mproc::RemoteError& e) {
        outcomes.append("RemoteError " + e.type_name() + ": " + e.message());
    }
}

// Python's _release: an action that raises breaks the barrier, and the exception is the last
// party's; the others get BrokenBarrierError.
TEST_P(ManagedBarrierAction, AThrowingActionBreaksTheBarrier) {
    auto outcomes = manager.list<std::string>();
    auto barrier = manager.Barrier(kParties, refuse);
    run_parties(wait_and_note, barrier, outcomes);
    auto seen = outcomes.copy();
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<std::string>{"ValueError: the action refuses", "broken", "broken", "broken", "broken"}));
    EXPECT_TRUE(barrier.broken());
    EXPECT_THROW(barrier.wait(), mproc::BrokenBarrierError);
    EXPECT_EQ(barrier.n_waiting(), 0);
}

TEST_P(ManagedBarrierAction, AnActionThrowingAnotherTypeIsARemoteErrorForTheLastParty) {
    auto outcomes = manager.list<std::string>();
    auto barrier = manager.Barrier(2, out_of_cheese);
    auto other = child_process(wait_and_note, barrier, outcomes);
    other.start();
    wait_and_note(barrier, outcomes);
    other.join();
    auto seen = outcomes.copy();
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<std::string>{"RemoteError std::runtime_error: out of cheese", "broken"}));
    // reset() repairs it; the action still runs (and throws) at the next cycle.
    barrier.reset();
    EXPECT_FALSE(barrier.broken());
}

// CPython's _test_default_timeout_f: the middle party is later than the default timeout for the
// second wait (CPython sleeps 1 s; here it comes once the barrier is broken, a state), so the
// others' wait() without a timeout times out and breaks the barrier.
void one_party_later_than_the_default(mproc::BarrierProxy barrier, mproc::ListProxy<bool> results) {
    if (barrier.wait(kDefaultTimeout) == kParties / 2) {
        const auto deadline = std::chrono::steady_clock::now() + kDefaultTimeout;
        while (!barrier.broken()) require(std::chrono::steady_clock::now() < deadline, "the barrier broke");
    }
    try {
        barrier.wait();
    } catch (const mproc::BrokenBarrierError&) {
        results.append(true);
    }
}

// CPython: _TestBarrier.test_default_timeout
TEST_P(ManagedBarrierAction, DefaultTimeoutBreaksTheBarrier) {
    auto barrier = manager.Barrier(kParties, {}, 500ms);
    auto results = manager.list<bool>();
    run_parties(one_party_later_than_the_default, barrier, results);
    EXPECT_EQ(results.size(), static_cast<std::size_t>(barrier.parties()));
}

TEST_P(ManagedBarrierAction, ATimeoutGivenToWaitOverridesTheDefault) {
    auto barrier = manager.Barrier(2, {}, std::chrono::hours(1));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(barrier.wait(50ms), mproc::BrokenBarrierError);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
    EXPECT_TRUE(barrier.broken());
}

TEST_P(ManagedBarrierAction, ADefaultTimeoutAloneBreaksALonelyWait) {
    auto barrier = manager.Barrier(2, {}, 50ms);
    EXPECT_EQ(thrown_text<mproc::BrokenBarrierError>([&] { barrier.wait(); }), "the barrier wait timed out");
    EXPECT_TRUE(barrier.broken());
}

TEST_P(ManagedBarrierAction, PartiesBelowOneIsPythonsValueError) {
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { manager.Barrier(0, refuse, 1s); }), "parties must be > 0");
    EXPECT_EQ(manager.number_of_objects(), 0u);
}

// An action made by another program cannot run in this server: its code references would point
// into an executable the server does not run. Made by hand here: what another program's client
// would send (parties, default timeout, the encoded call, that program's identity, held ids).
TEST_P(ManagedBarrierAction, AnActionOfAnotherProgramIsRefused) {
    const std::vector<std::byte> encoded(16, std::byte{1});
    const auto text = thrown_text<mproc::UsageError>([&] {
        manager.create("Barrier", std::int64_t{2}, std::int64_t{-1}, encoded, std::string("another program"),
                       std::vector<std::uint64_t>{});
    });
    EXPECT_NE(text.find("code of another program"), std::string::npos) << text;
    EXPECT_EQ(manager.number_of_objects(), 0u);
}

// ---- the server process ignores SIGINT ---------------------------------------------------------

// Whether the process ignores SIGINT, from the kernel's view of it (/proc/<pid>/status, SigIgn).
bool ignores_sigint(int pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("SigIgn:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (SIGINT - 1)) & 1u;
    throw std::runtime_error("no SigIgn line for pid " + std::to_string(pid));
}

using ManagerServerStart = ManagedBarrierAction;
MPROC_MANAGER_TESTS_UNDER_EVERY_START_METHOD(ManagerServerStart);

// Python's _run_server: signal.signal(SIGINT, SIG_IGN) (bpo-36368). A SIGINT does not end the
// server: it goes on serving, and ends by shutdown with exit code 0 (not -SIGINT).
TEST_P(ManagerServerStart, SyncManagersServerKeepsServingAfterSigint) {
    auto server = *manager.process();
    auto d = manager.dict<int, int>();
    d[1] = 1;
    EXPECT_TRUE(ignores_sigint(*server.pid()));
    server.interrupt();
    d[2] = 2;  // a round trip after the signal
    EXPECT_EQ(d.getitem(1), 1);
    EXPECT_EQ(d.getitem(2), 2);
    EXPECT_TRUE(server.is_alive());
    manager.shutdown();
    EXPECT_EQ(server.exitcode(), 0);
}

class Counter {
public:
    int increment() { return ++n_; }

private:
    int n_ = 0;
};

// Every manager's server, not only SyncManager's (the same start for all), and with an
// initializer too: the signal is ignored before it runs, as in Python.
TEST_P(ManagerServerStart, BaseManagersServerIgnoresSigintToo) {
    mproc::BaseManager base(options());
    base.register_type<Counter>("Counter").method<&Counter::increment>("increment");
    base.start([] {});
    auto server = *base.process();
    EXPECT_TRUE(ignores_sigint(*server.pid()));
    auto counter = base.create("Counter");
    EXPECT_EQ(counter.call<int>("increment"), 1);
    server.interrupt();
    EXPECT_EQ(counter.call<int>("increment"), 2);
    base.shutdown();
    EXPECT_EQ(server.exitcode(), 0);
}

}  // namespace
