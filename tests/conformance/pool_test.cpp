// Pool: Python's Pool API (spec/python_api.md §9), under every start method, and the faults it
// must survive: dying workers, overdue tasks, failing callbacks and initializers.
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <ranges>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mproc/context.hpp"
#include "mproc/pool.hpp"
#include "mproc/progress.hpp"
#include "mproc/synchronize.hpp"
#include "helpers/pool_test_helpers.hpp"
#include "multiprocessing_mapreduce.hpp"

using namespace std::chrono_literals;
using mproc::StartMethod;

namespace {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
int worker_pid(int) { return static_cast<int>(::getpid()); }
void do_nothing(int) {}

int dies_on_13(int x) {
    if (x == 13) std::raise(SIGKILL);
    return x;
}

int throws_on_7(int x) {
    if (x == 7) throw std::invalid_argument("seven is not allowed");
    return x;
}

int sleeps_when_asked(int seconds) {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    return seconds;
}

// A task that runs until the test sets the Event its workers were given when they started (an
// Event travels to a child by inheritance only, not with a task).
std::optional<mproc::Event> worker_go;
void keep_go(mproc::Event go) { worker_go = go; }
int waits_for_go(int x) {
    worker_go->wait();
    return x;
}

int slow_identity(int x) {
    std::this_thread::sleep_for(1ms);
    return x;
}

int initialized_value = 0;
void initialize(int value) { initialized_value = value; }
int read_initialized(int) { return initialized_value; }
void failing_initializer() { std::abort(); }

// A result that refuses to be encoded for negative values.
struct Picky {
    int value = 0;
    template <class Archive>
    void save(Archive& ar) const {
        if (value < 0) throw std::runtime_error("cannot encode a negative Picky");
        ar(value);
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(value);
    }
};
Picky make_picky(int x) { return Picky{x}; }

// How many items of an endless input imap has taken so far.
std::atomic<long long> items_taken{0};
int counted(int x) {
    ++items_taken;
    return x;
}

// One interface for every pool: Pool is one implementation of it, and what the interface alone
// cannot be (copied, made) it is not.
static_assert(std::is_base_of_v<mproc::BasicPool, mproc::Pool>);
static_assert(std::is_abstract_v<mproc::BasicPool>);
static_assert(!std::is_abstract_v<mproc::Pool>);
static_assert(std::has_virtual_destructor_v<mproc::BasicPool>);
static_assert(!std::is_copy_constructible_v<mproc::BasicPool> && !std::is_copy_assignable_v<mproc::BasicPool>);

std::vector<int> squares_below(int n) {
    std::vector<int> squares;
    for (int i = 0; i < n; ++i) squares.push_back(i * i);
    return squares;
}

// Code that knows only the interface, as code meant for any pool does: every kind of call, then
// close and join.
void run_generic(mproc::BasicPool& pool) {
    ASSERT_GE(pool.processes(), 1);
    auto sum = pool.apply_async(add, 40, 2);
    mproc::ApplyOptions<int> with_callback;
    std::atomic<int> called_back{0};
    with_callback.callback = [&called_back](const int& v) { called_back = v; };
    auto squared = pool.apply_async(with_callback, square, 9);
    EXPECT_EQ(pool.apply(square, 5), 25);
    EXPECT_EQ(pool.map(square, std::views::iota(0, 300)), squares_below(300));
    EXPECT_EQ(pool.map(square, std::views::iota(0, 300), 7), squares_below(300));
    EXPECT_EQ(pool.starmap(add, std::vector<std::pair<int, int>>{{1, 2}, {3, 4}}), (std::vector<int>{3, 7}));
    EXPECT_EQ(pool.starmap_async(add, std::vector<std::tuple<int, int>>{{10, 20}}).get(10s), (std::vector<int>{30}));

    std::vector<int> ordered;
    for (int v : pool.imap(square, std::views::iota(0, 200))) ordered.push_back(v);
    EXPECT_EQ(ordered, squares_below(200));
    std::multiset<int> unordered;
    auto it = pool.imap_unordered(square, std::views::iota(0, 200), 3);
    while (auto v = it.next(10s)) unordered.insert(*v);
    EXPECT_EQ(unordered, std::multiset<int>(ordered.begin(), ordered.end()));

    EXPECT_EQ(sum.get(10s), 42);
    EXPECT_EQ(squared.get(10s), 81);
    EXPECT_EQ(called_back.load(), 81);

    // Work still under way at close() finishes; an imap not yet read has its whole input sent.
    auto pending = pool.map_async(slow_identity, std::views::iota(0, 50));
    auto unread = pool.imap(square, std::views::iota(0, 500));
    pool.close();
    try {
        pool.apply(square, 1);
        ADD_FAILURE() << "a closed pool took a task";
    } catch (const mproc::UsageError& e) {
        EXPECT_STREQ(e.what(), "Pool not running");
    }
    pool.join();
    EXPECT_TRUE(pending.ready()) << "join() returned before a result was ready";
    std::vector<int> identities(50);
    std::iota(identities.begin(), identities.end(), 0);
    EXPECT_EQ(pending.get(), identities);
    std::vector<int> late;
    while (auto v = unread.next(10s)) late.push_back(*v);
    EXPECT_EQ(late, squares_below(500));
}

// SimpleMapReduce's map and reduce: words of a line, and a word's total.
std::vector<std::pair<std::string, int>> words_of(const std::string& line) {
    std::vector<std::pair<std::string, int>> pairs;
    std::istringstream in(line);
    for (std::string word; in >> word;) pairs.emplace_back(word, 1);
    return pairs;
}
std::pair<std::string, int> total_of(const std::pair<std::string, std::vector<int>>& occurrences) {
    return {occurrences.first, std::accumulate(occurrences.second.begin(), occurrences.second.end(), 0)};
}

class PoolTest : public mproc_test::PoolFixture {};

}  // namespace

MPROC_POOL_TESTS_UNDER_EVERY_START_METHOD(PoolTest);

TEST_P(PoolTest, MapKeepsOrder) {
    mproc::Pool pool(options());
    EXPECT_EQ(pool.processes(), 2);
    std::vector<int> expected(1000);
    for (int i = 0; i < 1000; ++i) expected[static_cast<std::size_t>(i)] = i * i;
    EXPECT_EQ(pool.map(square, std::views::iota(0, 1000)), expected);
    EXPECT_EQ(pool.map(square, std::views::iota(0, 1000), 1), expected);
    EXPECT_EQ(pool.map(square, std::views::iota(0, 1000), 7), expected);
    EXPECT_EQ(pool.map(square, std::vector<int>{}), std::vector<int>{});
    EXPECT_EQ(pool.map([](const std::string& s) { return s + s; }, std::vector<std::string>{"a", "bc"}),
              (std::vector<std::string>{"aa", "bcbc"}));
    EXPECT_EQ(pool.map(do_nothing, std::vector<int>{1, 2}).size(), 2u);
}

TEST_P(PoolTest, ApplyAndApplyAsync) {
    mproc::Event go;
    auto o = options();
    o.initializer = {keep_go, go};
    mproc::Pool pool(o);
    EXPECT_EQ(pool.apply(add, 40, 2), 42);
    auto r = pool.apply_async(square, 12);
    EXPECT_EQ(r.get(10s), 144);
    EXPECT_TRUE(r.ready());
    EXPECT_TRUE(r.successful());

    // A task that runs until the test lets it go: not ready until then, whatever the timing.
    auto slow = pool.apply_async(waits_for_go, 1);
    EXPECT_FALSE(slow.ready());
    EXPECT_THROW(slow.successful(), mproc::UsageError);
    EXPECT_THROW(slow.get(10ms), mproc::TimeoutError);
    EXPECT_FALSE(slow.ready());
    go.set();
    EXPECT_EQ(slow.get(), 1);
}

TEST_P(PoolTest, CallbacksRunAndTheirExceptionsDoNotStopThePool) {
    mproc::Pool pool(options());
    std::atomic<int> seen{0};
    std::atomic<int> errors{0};
    mproc::ApplyOptions<int> ok;
    ok.callback = [&seen](const int& v) { seen = v; };
    pool.apply_async(ok, square, 9).wait();
    EXPECT_EQ(seen.load(), 81);

    mproc::ApplyOptions<int> failing;
    failing.error_callback = [&errors](const std::exception_ptr&) { ++errors; };
    pool.apply_async(failing, throws_on_7, 7).wait();
    EXPECT_EQ(errors.load(), 1);

    mproc::ApplyOptions<int> raising;
    raising.callback = [](const int&) { throw std::runtime_error("callback failure"); };
    pool.apply_async(raising, square, 3).wait();
    EXPECT_EQ(pool.apply(square, 5), 25) << "the pool died with its callback";

    mproc::MapOptions<int> map_options;
    std::vector<int> from_callback;
    map_options.callback = [&from_callback](const std::vector<int>& v) { from_callback = v; };
    auto all = pool.map_async(square, std::vector<int>{1, 2, 3}, map_options);
    EXPECT_EQ(all.get(), (std::vector<int>{1, 4, 9}));
    EXPECT_EQ(from_callback, (std::vector<int>{1, 4, 9}));
}

TEST_P(PoolTest, StarmapUnpacksTuplesAndPairs) {
    mproc::Pool pool(options());
    EXPECT_EQ(pool.starmap(add, std::vector<std::tuple<int, int>>{{1, 2}, {3, 4}}), (std::vector<int>{3, 7}));
    EXPECT_EQ(pool.starmap(add, std::vector<std::pair<int, int>>{{10, 20}}), (std::vector<int>{30}));
}

TEST_P(PoolTest, ImapOrderedAndUnordered) {
    mproc::Pool pool(options());
    std::vector<int> ordered;
    for (int v : pool.imap(square, std::views::iota(0, 200))) ordered.push_back(v);
    std::vector<int> expected(200);
    for (int i = 0; i < 200; ++i) expected[static_cast<std::size_t>(i)] = i * i;
    EXPECT_EQ(ordered, expected);

    std::multiset<int> unordered;
    auto it = pool.imap_unordered(square, std::views::iota(0, 200), 3);
    while (auto v = it.next(10s)) unordered.insert(*v);
    EXPECT_EQ(unordered, std::multiset<int>(expected.begin(), expected.end()));
}

TEST_P(PoolTest, ImapOverAnEndlessInputRunsInBoundedMemory) {
    mproc::Pool pool(options());
    items_taken = 0;
    auto results = pool.imap(square, std::views::iota(0) | std::views::transform(counted), 16);
    int count = 0;
    long long most_ahead = 0;
    for (int v : results) {
        EXPECT_EQ(v, count * count);
        ++count;
        most_ahead = std::max(most_ahead, items_taken.load() - count);
        if (count == 40'000) break;  // 40,000 squared still fits an int
    }
    // The input is taken lazily: never more than the in-flight window (16 chunks per worker) ahead
    // of what was consumed, so memory stays bounded however long the input is.
    EXPECT_LE(most_ahead, 2 * 16 * 16 + 16) << "imap took its input ahead of the results";
    EXPECT_GT(most_ahead, 0);
}

TEST_P(PoolTest, TaskExceptionsCarryTypeAndMessage) {
    mproc::Pool pool(options());
    auto r = pool.apply_async(throws_on_7, 7);
    try {
        r.get();
        ADD_FAILURE() << "no error";
    } catch (const mproc::TaskError& e) {
        EXPECT_EQ(e.type_name(), "std::invalid_argument");
        EXPECT_EQ(e.message(), "seven is not allowed");
    }
    EXPECT_FALSE(r.successful());
    EXPECT_THROW(pool.map(throws_on_7, std::views::iota(0, 20)), mproc::TaskError);
    EXPECT_EQ(pool.map(throws_on_7, std::vector<int>{1, 2}), (std::vector<int>{1, 2}));
}

TEST_P(PoolTest, AResultThatCannotBeEncodedFailsOnlyItsTask) {
    mproc::Pool pool(options());
    auto bad = pool.apply_async(make_picky, -1);
    auto good = pool.apply_async(make_picky, 5);
    EXPECT_THROW(bad.get(), mproc::TaskError);
    EXPECT_EQ(good.get().value, 5);
}

TEST_P(PoolTest, ChunksLargerThanTheLinksRingsGoBothWays) {
    // A worker's link has rings of a few hundred KiB each way: a chunk of several MiB goes through
    // in parts, its bytes intact, among small chunks on the same links.
    mproc::Pool pool(options());
    std::vector<std::string> inputs;
    for (int i = 0; i < 6; ++i) {
        std::string s(std::size_t{3} << 20, 'a');
        for (std::size_t j = 0; j < s.size(); j += 4093) s[j] = static_cast<char>('a' + (i + j) % 26);
        inputs.push_back(std::move(s));
        inputs.emplace_back("small");
    }
    const auto reversed = pool.map(
        [](const std::string& s) { return std::string(s.rbegin(), s.rend()); }, inputs, std::size_t{1});
    ASSERT_EQ(reversed.size(), inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i)
        EXPECT_TRUE(std::equal(inputs[i].rbegin(), inputs[i].rend(), reversed[i].begin())) << "chunk " << i;
}

namespace {
// CPU time (user + system) of another process, from /proc/<pid>/stat, in clock ticks.
long cpu_ticks_of(int pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string content;
    std::getline(stat, content);
    std::istringstream rest(content.substr(content.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stol(field);
        if (i == 15) stime = std::stol(field);
    }
    return utime + stime;
}
std::chrono::nanoseconds own_cpu_time() {
    timespec t{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
}
}  // namespace

TEST_P(PoolTest, AnIdlePoolWaitsInTheKernel) {
    // The dispatcher and the workers spin for moments after work, then sleep: over a second of
    // idleness they use next to no CPU (a side that kept polling would use the whole second).
    mproc::Pool pool(options());
    EXPECT_EQ(pool.map(square, std::views::iota(0, 20000), std::size_t{1}).size(), 20000u);
    std::vector<int> pids;
    for (const auto& w : pool.workers()) pids.push_back(w.pid().value_or(0));
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    std::vector<long> before;
    for (int pid : pids) before.push_back(cpu_ticks_of(pid));
    const auto own_before = own_cpu_time();
    std::this_thread::sleep_for(1s);  // the measured interval, not a wait for a state
    const auto own_used = own_cpu_time() - own_before;
    EXPECT_LT(own_used, 50ms) << "the pool's dispatcher kept running while idle";
    for (std::size_t i = 0; i < pids.size(); ++i) {
        const long used_ms = (cpu_ticks_of(pids[i]) - before[i]) * 1000 / ticks_per_second;
        EXPECT_LT(used_ms, 50) << "worker " << pids[i] << " kept running while idle";
    }
    EXPECT_EQ(pool.apply(square, 9), 81);  // and it wakes for the next task
}

namespace {
int sleeps_ms_then_squares(int x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return x * x;
}
int dies_at_once(int) {
    std::raise(SIGKILL);
    return 0;
}
}  // namespace

TEST_P(PoolTest, CallbacksRunOnTheDispatcherEvenWhileTheCallerCollects) {
    // A caller waiting in get() may collect answers itself; callbacks and progress still run on
    // the pool's dispatcher thread, never on the caller's.
    mproc::Pool pool(options());
    const auto caller = std::this_thread::get_id();
    std::atomic<int> on_caller{0};
    std::atomic<int> calls{0};
    for (int round = 0; round < 5; ++round) {
        auto r = pool.apply_async(mproc::ApplyOptions<int>{.callback = [&](const int&) {
                                      ++calls;
                                      if (std::this_thread::get_id() == caller) ++on_caller;
                                  }},
                                  sleeps_ms_then_squares, round);
        EXPECT_EQ(r.get(), round * round);
        mproc::MapOptions<int> map_options;
        map_options.chunksize = 1;
        map_options.on_progress = [&](std::size_t, std::size_t) {
            ++calls;
            if (std::this_thread::get_id() == caller) ++on_caller;
        };
        EXPECT_EQ(pool.map(sleeps_ms_then_squares, std::vector<int>{1, 2, 3}, map_options), (std::vector<int>{1, 4, 9}));
    }
    EXPECT_EQ(calls.load(), 5 * 4);
    EXPECT_EQ(on_caller.load(), 0);
    // And a plain result, which the caller may take itself, is right too.
    EXPECT_EQ(pool.apply(sleeps_ms_then_squares, 12), 144);
}

TEST_P(PoolTest, AWaitingCallerLearnsOfItsWorkersDeath) {
    // The caller sleeps waiting for its answer; the worker dies instead: the dispatcher, woken by
    // the sentinel, takes over and fails the task, and the caller wakes with the error.
    mproc::Pool pool(options());
    for (int round = 0; round < 3; ++round) {
        auto r = pool.apply_async(dies_at_once, round);
        EXPECT_THROW(r.get(30s), mproc::WorkerLostError);
        EXPECT_EQ(pool.apply(square, round), round * round);
    }
}

TEST_P(PoolTest, TerminateWakesACallerWaitingForAnAnswer) {
    mproc::Pool pool(options());
    auto r = pool.apply_async(sleeps_when_asked, 60);
    std::thread stopper([&] {
        // The caller is in get() by now or soon; terminate() must reach it either way.
        std::this_thread::sleep_for(100ms);
        pool.terminate();
    });
    const auto began = std::chrono::steady_clock::now();
    EXPECT_THROW(r.get(30s), mproc::ProcessError);
    EXPECT_LT(std::chrono::steady_clock::now() - began, 20s);
    stopper.join();
    pool.join();
}

TEST_P(PoolTest, AWorkerThatDiesFailsItsTaskAndIsReplaced) {
    mproc::Pool pool(options());
    auto results = pool.imap_unordered(dies_on_13, std::views::iota(0, 40));
    std::set<int> got;
    int lost = 0;
    for (;;) {
        try {
            auto v = results.next(30s);
            if (!v) break;
            got.insert(*v);
        } catch (const mproc::WorkerLostError& e) {
            ++lost;
            EXPECT_EQ(e.exitcode(), -SIGKILL);
        }
    }
    EXPECT_EQ(lost, 1);
    EXPECT_EQ(got.size(), 39u);
    EXPECT_EQ(got.count(13), 0u);
    EXPECT_EQ(pool.apply(square, 6), 36);
    EXPECT_EQ(pool.workers().size(), 2u);
}

TEST_P(PoolTest, RandomWorkerKillsDuringALongMapLoseOnlyTheRunningTasks) {
    mproc::Pool pool(options());
    std::atomic<bool> done{false};
    std::atomic<int> kills{0};
    std::atomic<int> outcomes{0};
    std::thread killer([&] {
        std::mt19937 random(42);
        int outcomes_at_last_kill = -1;
        while (!done) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20 + random() % 30));
            // A kill only once the pool has delivered something since the last one: workers killed
            // one after another before any answer look like workers that cannot start, which the
            // pool rightly gives up on (a slow start under a sanitizer makes that likely).
            if (outcomes.load() == outcomes_at_last_kill) continue;
            auto workers = pool.workers();
            if (workers.empty() || kills >= 8) continue;
            auto& victim = workers[random() % workers.size()];
            if (auto pid = victim.pid(); pid && ::kill(*pid, SIGKILL) == 0) {
                ++kills;
                outcomes_at_last_kill = outcomes.load();
            }
        }
    });
    auto results = pool.imap_unordered(slow_identity, std::views::iota(0, 10'000));
    std::set<int> got;
    int lost = 0;
    for (;;) {
        try {
            auto v = results.next(60s);
            if (!v) break;
            ++outcomes;
            EXPECT_TRUE(got.insert(*v).second) << "result " << *v << " arrived twice";
        } catch (const mproc::WorkerLostError&) {
            ++outcomes;
            ++lost;
        } catch (const std::exception& e) {
            ADD_FAILURE() << "imap_unordered raised " << typeid(e).name() << ": " << e.what();
            break;
        }
    }
    done = true;
    killer.join();
    EXPECT_EQ(got.size() + static_cast<std::size_t>(lost), 10'000u);
    EXPECT_LE(lost, kills.load());
    EXPECT_GT(kills.load(), 0) << "the test killed no worker";
}

TEST_P(PoolTest, TaskTimeoutKillsTheWorkerAndFailsTheTask) {
    auto o = options();
    o.task_timeout = 300ms;
    mproc::Pool pool(o);
    auto overdue = pool.apply_async(sleeps_when_asked, 30);
    auto fine = pool.apply_async(sleeps_when_asked, 0);
    EXPECT_THROW(overdue.get(20s), mproc::TimeoutError);
    EXPECT_EQ(fine.get(20s), 0);
    EXPECT_EQ(pool.apply(square, 4), 16);
}

TEST_P(PoolTest, MaxTasksPerChildReplacesWorkers) {
    auto o = options();
    o.maxtasksperchild = 2;
    mproc::Pool pool(o);
    auto pids = pool.map(worker_pid, std::views::iota(0, 12), 1);
    std::set<int> distinct(pids.begin(), pids.end());
    EXPECT_GE(distinct.size(), 6u);
}

TEST_P(PoolTest, InitializerRunsInEveryWorker) {
    auto o = options();
    o.initializer = {initialize, 42};
    mproc::Pool pool(o);
    auto values = pool.map(read_initialized, std::views::iota(0, 20), 1);
    EXPECT_EQ(values, std::vector<int>(20, 42));
}

TEST_P(PoolTest, FailingInitializerEndsThePoolInsteadOfLooping) {
    auto o = options();
    o.initializer = failing_initializer;
    mproc::Pool pool(o);
    auto r = pool.apply_async(square, 2);
    try {
        r.get(60s);
        ADD_FAILURE() << "no error";
    } catch (const mproc::ProcessError& e) {
        EXPECT_NE(std::string(e.what()).find("is the initializer failing?"), std::string::npos) << e.what();
    }
}

TEST_P(PoolTest, WorkersAreNamedAfterTheStartMethodWithConsecutiveNumbers) {
    mproc::Process before;  // workers take the next numbers of the same counter
    const int first = std::stoi(before.name().substr(before.name().find('-') + 1)) + 1;
    mproc::Pool pool(options());
    const std::string prefix = GetParam() == StartMethod::fork    ? "ForkPoolWorker-"
                               : GetParam() == StartMethod::spawn ? "SpawnPoolWorker-"
                                                                  : "ForkServerPoolWorker-";
    std::set<std::string> names;
    for (auto& w : pool.workers()) {
        names.insert(w.name());
        EXPECT_TRUE(w.daemon());
    }
    EXPECT_EQ(names, (std::set<std::string>{prefix + std::to_string(first), prefix + std::to_string(first + 1)}));
    mproc::Process after;
    EXPECT_EQ(after.name(), "Process-" + std::to_string(first + 2));
}

TEST_P(PoolTest, CloseJoinTerminate) {
    mproc::Pool pool(options());
    EXPECT_THROW(pool.join(), mproc::UsageError);
    auto r = pool.apply_async(sleeps_when_asked, 1);
    pool.close();
    try {
        pool.apply(square, 1);
        ADD_FAILURE();
    } catch (const mproc::UsageError& e) {
        EXPECT_STREQ(e.what(), "Pool not running");
    }
    pool.join();
    EXPECT_EQ(r.get(), 1) << "close() let the queued task finish";

    mproc::Pool doomed(options());
    auto pending = doomed.apply_async(sleeps_when_asked, 30);
    doomed.terminate();
    EXPECT_THROW(pending.get(10s), mproc::ProcessError);
    doomed.join();
}

TEST_P(PoolTest, ProgressIsReported) {
    mproc::Pool pool(options());
    std::vector<std::size_t> seen;
    mproc::MapOptions<int> o;
    o.chunksize = 10;
    o.on_progress = [&seen](std::size_t done, std::size_t total) {
        EXPECT_EQ(total, 100u);
        seen.push_back(done);
    };
    pool.map(square, std::views::iota(0, 100), o);
    ASSERT_EQ(seen.size(), 10u);
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_EQ(seen.back(), 100u);
    mproc::ProgressBar bar("quiet");  // stderr is not a terminal in tests: draws nothing
    EXPECT_FALSE(bar.drawing());
    o.on_progress = bar;
    EXPECT_EQ(pool.map(square, std::views::iota(0, 100), o).size(), 100u);
}

TEST_P(PoolTest, CodeWrittenAgainstBasicPoolRunsOnAPool) {
    mproc::Pool pool(options());
    run_generic(pool);
}

TEST_P(PoolTest, SimpleMapReduceOnABorrowedPoolCountsAsOnItsOwn) {
    const std::vector<std::string> lines{"the cat sat", "the dog sat on the cat", "a dog", "", "on"};
    const std::vector<std::pair<std::string, int>> expected{{"the", 3}, {"cat", 2}, {"sat", 2},
                                                            {"dog", 2}, {"on", 2},  {"a", 1}};
    SimpleMapReduce own(words_of, total_of, 2);
    EXPECT_EQ(own(lines), expected);

    mproc::Pool pool(options());
    mproc::BasicPool& any_pool = pool;
    {
        SimpleMapReduce borrowed(any_pool, words_of, total_of);
        EXPECT_EQ(borrowed(lines), expected);
        EXPECT_EQ(borrowed(lines, 2), expected);
    }
    EXPECT_EQ(pool.apply(square, 3), 9) << "the mapper closed a pool it did not own";
    pool.close();
    pool.join();
}

TEST(PoolOptionsTest, BadOptionsAreRefused) {
    mproc::PoolOptions zero;
    zero.processes = 0;
    try {
        mproc::Pool pool(zero);
        ADD_FAILURE();
    } catch (const mproc::UsageError& e) {
        EXPECT_STREQ(e.what(), "Number of processes must be at least 1");
    }
    mproc::PoolOptions bad_max;
    bad_max.maxtasksperchild = 0;
    EXPECT_THROW(mproc::Pool pool(bad_max), mproc::UsageError);
    mproc::Pool pool({.processes = 1});
    EXPECT_THROW(pool.map(square, std::vector<int>{1}, std::size_t{0}), mproc::UsageError);
}
