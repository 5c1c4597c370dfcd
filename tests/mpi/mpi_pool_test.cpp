// The MPI pool, as rank 0 sees it: ctest runs this program under mpirun (three ranks: rank 0 runs
// the tests, two serve), over shared memory and over TCP only, and once without mpirun.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <ranges>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "mproc/mpi.hpp"
#include "mproc/process.hpp"

namespace {

using namespace std::chrono_literals;

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
int parent_pid(int) { return static_cast<int>(::getppid()); }
int own_pid(int) { return static_cast<int>(::getpid()); }
int throw_runtime_error(int x) {
    if (x == 3) throw std::runtime_error("three is not allowed");
    return x;
}
int kill_self(int) {
    ::raise(SIGKILL);
    return 0;
}
int kill_self_on_seven(int x) {
    if (x == 7) ::raise(SIGKILL);
    return x;
}
int sleep_ms(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
}

int g_configured = 0;
void configure(int value) { g_configured = value; }
int configured(int) { return g_configured; }

bool with_mpirun() { return mproc::mpi::size() > 1; }

// The CPU time (user + system) a process of this machine used so far.
std::chrono::microseconds cpu_time_of(int pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14) utime = std::stoll(field);
        if (i == 15) stime = std::stoll(field);
    }
    return std::chrono::microseconds((utime + stime) * 1'000'000 / ::sysconf(_SC_CLK_TCK));
}

// Code written against the one pool interface, as a user would.
std::vector<int> generic_work(mproc::BasicPool& pool) {
    std::vector<int> out;
    for (int v : pool.map(square, std::views::iota(0, 20))) out.push_back(v);
    out.push_back(pool.apply(add, 40, 2));
    for (int v : pool.starmap(add, std::vector<std::tuple<int, int>>{{1, 2}, {3, 4}})) out.push_back(v);
    for (int v : pool.imap(square, std::vector<int>{5, 6, 7})) out.push_back(v);
    std::multiset<int> unordered;
    for (int v : pool.imap_unordered(square, std::vector<int>{8, 9})) unordered.insert(v);
    out.insert(out.end(), unordered.begin(), unordered.end());
    return out;
}

TEST(MpiPool, RunsOnTheServingRanks) {
    if (with_mpirun()) {
        EXPECT_EQ(mproc::mpi::rank(), 0);
        mproc::mpi::Pool pool({.workers_per_rank = 2});
        EXPECT_EQ(pool.ranks(), mproc::mpi::size() - 1);
        EXPECT_EQ(pool.processes(), 2 * (mproc::mpi::size() - 1));
    } else {
        mproc::mpi::Pool pool({.workers_per_rank = 2});
        EXPECT_EQ(pool.ranks(), 0);
        EXPECT_EQ(pool.processes(), 2);
    }
}

TEST(MpiPool, CodeWrittenForBasicPoolGivesTheLocalPoolsResults) {
    std::vector<int> local_results, mpi_results;
    {
        mproc::Pool local({.processes = 2});
        local_results = generic_work(local);
    }
    {
        mproc::mpi::Pool pool({.workers_per_rank = 2});
        mpi_results = generic_work(pool);
        pool.close();
        pool.join();
    }
    EXPECT_EQ(mpi_results, local_results);
    EXPECT_EQ(mpi_results.at(20), 42);
}

TEST(MpiPool, MapOfManyChunksKeepsOrderAndReportsProgress) {
    mproc::mpi::Pool pool({.workers_per_rank = 2, .chunks_in_flight_per_worker = 2});
    std::atomic<std::size_t> last_done{0};
    mproc::MapOptions<int> options{.chunksize = 7, .on_progress = [&](std::size_t done, std::size_t) { last_done = done; }};
    const auto squares = pool.map(square, std::views::iota(0, 5000), std::move(options));
    ASSERT_EQ(squares.size(), 5000u);
    for (int i = 0; i < 5000; ++i) ASSERT_EQ(squares[static_cast<std::size_t>(i)], i * i);
    EXPECT_EQ(last_done.load(), 5000u);
}

TEST(MpiPool, TasksSpreadOverEveryRank) {
    // Under fork, a worker's parent is the serving rank that runs it; with one rank only, this
    // process, whose local pool runs the tasks.
    mproc::mpi::Pool pool({.workers_per_rank = 1, .context = mproc::StartMethod::fork});
    const auto parents = pool.map(parent_pid, std::views::iota(0, 64), 1);
    const std::set<int> ranks(parents.begin(), parents.end());
    // Tasks submitted one at a time, each waited for, spread too.
    std::set<int> one_by_one;
    for (int i = 0; i < 4 * mproc::mpi::size(); ++i) one_by_one.insert(pool.apply(parent_pid, i));
    EXPECT_EQ(one_by_one, ranks);
    if (with_mpirun()) {
        EXPECT_EQ(ranks.size(), static_cast<std::size_t>(mproc::mpi::size() - 1));
        EXPECT_FALSE(ranks.contains(static_cast<int>(::getpid())));
    } else {
        EXPECT_EQ(ranks, std::set<int>{static_cast<int>(::getpid())});
    }
}

TEST(MpiPool, ApplyAsyncCallbacksRunAndTaskErrorsArriveAsTaskError) {
    mproc::mpi::Pool pool({.workers_per_rank = 1});
    std::atomic<int> called{0};
    auto result = pool.apply_async(mproc::ApplyOptions<int>{.callback = [&](const int& v) { called = v; }}, square, 9);
    EXPECT_EQ(result.get(10s), 81);
    EXPECT_EQ(called.load(), 81);

    auto failing = pool.apply_async(throw_runtime_error, 3);
    try {
        failing.get(10s);
        FAIL() << "no error";
    } catch (const mproc::TaskError& e) {
        EXPECT_EQ(e.type_name(), "std::runtime_error");
        EXPECT_EQ(e.message(), "three is not allowed");
    }
    EXPECT_THROW(pool.map(throw_runtime_error, std::views::iota(0, 10)), mproc::TaskError);
}

TEST(MpiPool, AKilledWorkerFailsItsTaskAndThePoolGoesOn) {
    mproc::mpi::Pool pool({.workers_per_rank = 2});
    const int processes = pool.processes();
    auto lost = pool.apply_async(kill_self, 0);
    try {
        lost.get(60s);
        FAIL() << "no error";
    } catch (const mproc::WorkerLostError& e) {
        EXPECT_EQ(e.exitcode(), -SIGKILL);
        if (with_mpirun()) {
            EXPECT_NE(std::string(e.what()).find("MPI rank"), std::string::npos) << e.what();
        }
    }
    // Mid-map: the map fails with the lost worker's error (as Python's map does with a task's),
    // and an imap_unordered gives every other item.
    EXPECT_THROW(pool.map(kill_self_on_seven, std::views::iota(0, 50), 1), mproc::WorkerLostError);
    std::multiset<int> seen;
    int lost_items = 0;
    auto results = pool.imap_unordered(kill_self_on_seven, std::views::iota(0, 50), 1);
    for (;;) {
        try {
            auto next = results.next(60s);
            if (!next) break;
            seen.insert(*next);
        } catch (const mproc::WorkerLostError&) {
            ++lost_items;
        }
    }
    EXPECT_EQ(lost_items, 1);
    EXPECT_EQ(seen.size(), 49u);
    EXPECT_FALSE(seen.contains(7));
    const auto squares = pool.map(square, std::views::iota(0, 100), 3);
    EXPECT_EQ(squares.at(99), 99 * 99);
    EXPECT_EQ(pool.processes(), processes);
}

TEST(MpiPool, ARankWhoseLocalPoolGaveUpStartsItAgain) {
    // A local pool ends itself when its workers keep dying before they finish a task (more than
    // 2 × processes + 3 such deaths); a serving rank then starts a new one for the next tasks
    // instead of failing them. Under mpirun each rank sees about half of the kills.
    mproc::mpi::Pool pool({.workers_per_rank = 1});
    const int kills = with_mpirun() ? 8 * (mproc::mpi::size() - 1) : 3;
    for (int i = 0; i < kills; ++i) EXPECT_THROW(pool.apply(kill_self, i), mproc::WorkerLostError) << "kill " << i;
    EXPECT_EQ(pool.ranks(), std::max(0, mproc::mpi::size() - 1));
    const auto squares = pool.map(square, std::views::iota(0, 40), 1);
    EXPECT_EQ(squares.at(39), 39 * 39);
}

TEST(MpiPool, TaskTimeoutKillsTheTaskNotThePool) {
    mproc::mpi::Pool pool({.workers_per_rank = 1, .task_timeout = 300ms});
    auto slow = pool.apply_async(sleep_ms, 60'000);
    EXPECT_THROW(slow.get(60s), mproc::TimeoutError);
    EXPECT_EQ(pool.apply(square, 5), 25);
}

TEST(MpiPool, ATaskTheServingRankCannotDecodeFailsWithTheDecodeError) {
    mproc::mpi::Pool pool({.workers_per_rank = 1});
    // A chunk whose bytes are not what its entry reads: the serving side's decoder refuses it.
    auto state = std::make_shared<mproc::detail::ResultState<int>>();
    mproc::detail::ChunkTask task;
    task.site = mproc::detail::call_site<int (*)(int)>(&mproc::detail::run_apply<int (*)(int), int>, &square);
    task.arguments = {std::byte{0xff}};
    task.sink = std::make_shared<mproc::detail::ApplySink<int>>(state);
    mproc::detail::PoolAccess::submit(pool, {std::move(task)});
    std::unique_lock lock(state->mutex);
    ASSERT_TRUE(state->ready_changed.wait_for(lock, 60s, [&] { return state->ready; }));
    ASSERT_TRUE(state->error);
    try {
        std::rethrow_exception(state->error);
    } catch (const mproc::TaskError& e) {
        EXPECT_NE(e.type_name().find("DecodeError"), std::string::npos) << e.what();
    }
}

TEST(MpiPool, InitializerRunsInEveryWorker) {
    mproc::mpi::Pool pool({.workers_per_rank = 2, .initializer = {configure, 17}});
    for (int v : pool.map(configured, std::views::iota(0, 16), 1)) EXPECT_EQ(v, 17);
}

TEST(MpiPool, RunInRankRunsTasksInTheRanksThemselves) {
    // With one rank only there is no serving rank to run them in: the local pool does.
    mproc::mpi::Pool pool({.workers_per_rank = 1, .run_in_rank = true});
    const auto pids = pool.map(own_pid, std::views::iota(0, 64), 1);
    const std::set<int> distinct(pids.begin(), pids.end());
    if (with_mpirun()) {
        EXPECT_EQ(pool.processes(), mproc::mpi::size() - 1);
        EXPECT_EQ(distinct.size(), static_cast<std::size_t>(mproc::mpi::size() - 1));
    } else {
        EXPECT_EQ(pool.processes(), 1);
        EXPECT_EQ(distinct.size(), 1u);
    }
    EXPECT_FALSE(distinct.contains(static_cast<int>(::getpid())));
    EXPECT_EQ(pool.map(square, std::views::iota(0, 1000)).at(999), 999 * 999);
    EXPECT_THROW(pool.apply(throw_runtime_error, 3), mproc::TaskError);
}

TEST(MpiPool, MisuseIsAUsageError) {
    mproc::mpi::Pool pool({.workers_per_rank = 1});
    if (with_mpirun()) {
        EXPECT_THROW(mproc::mpi::Pool second, mproc::UsageError);
    }
    EXPECT_THROW(pool.join(), mproc::UsageError);  // still running
    pool.close();
    EXPECT_THROW(pool.apply_async(square, 1), mproc::UsageError);
    pool.join();
    EXPECT_THROW(mproc::mpi::Pool({.workers_per_rank = 0}), mproc::UsageError);
}

TEST(MpiPool, TerminateFailsWhatIsUnfinished) {
    mproc::mpi::Pool pool({.workers_per_rank = 1});
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 8; ++i) results.push_back(pool.apply_async(sleep_ms, 60'000));
    pool.terminate();
    pool.join();  // when it returns, every result is ready
    for (auto& r : results) {
        ASSERT_TRUE(r.ready());
        EXPECT_THROW(r.get(), mproc::ProcessError);
    }
}

TEST(MpiPool, AnIdlePoolBurnsNoCore) {
    mproc::mpi::Pool pool({.workers_per_rank = 1, .context = mproc::StartMethod::fork});
    std::set<int> pids{static_cast<int>(::getpid())};
    for (int p : pool.map(parent_pid, std::views::iota(0, 16), 1)) pids.insert(p);
    // A second of idleness, measured up to three times: a polling loop that burns a core uses
    // most of every second, while a one-off stir (a worker starting, the machine's other load)
    // spoils one second at most.
    std::string verdict;
    for (int attempt = 0; attempt < 3; ++attempt) {
        std::map<int, std::chrono::microseconds> before;
        for (int pid : pids) before[pid] = cpu_time_of(pid);
        const auto start = std::chrono::steady_clock::now();
        std::this_thread::sleep_for(1s);  // the idleness being measured, not a wait for a state
        const auto wall = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
        verdict.clear();
        for (int pid : pids) {
            const auto used = cpu_time_of(pid) - before[pid];
            // 10% of a CPU: an order of magnitude above what the back-off costs, far below a spin.
            if (used >= wall / 10)
                verdict += "pid " + std::to_string(pid) + " used " + std::to_string(used.count()) + " us of CPU in " +
                           std::to_string(wall.count()) + " us; ";
        }
        if (verdict.empty()) break;
    }
    EXPECT_EQ(verdict, "");
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::mpi::init(argc, argv);
    testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
