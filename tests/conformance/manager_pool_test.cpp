// The managed Pool (SyncManager::Pool, Python's PoolProxy) under every start method: the pool
// lives in the server, tasks travel there as code references, results come back through result
// and iterator objects of the server. The port of a CPython test is named in a comment above it.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "helpers/manager_test_helpers.hpp"
#include "mproc/errors.hpp"
#include "mproc/managed_pool.hpp"
#include "mproc/managers.hpp"

using namespace std::chrono_literals;
using mproc_test::range;
using mproc_test::require;
using mproc_test::thrown_text;

namespace {

int sqr(int x) { return x * x; }
int mul(int x, int y) { return x * y; }

// A square that waits for `go` first: what the tests hold a task with, instead of a sleep.
int sqr_when_set(int x, mproc::EventProxy go) {
    go.wait();
    return x * x;
}
int one_when_set(mproc::EventProxy go) {
    go.wait();
    return 1;
}
int wait_for_ever(int x, mproc::EventProxy never) {
    never.wait();
    return x;
}

int raise_value_error(int x) { throw mproc::ValueError("bad value " + std::to_string(x)); }
int raise_key_error() { throw mproc::KeyError("'key'"); }
int raise_runtime_error() { throw std::runtime_error("foo"); }

std::vector<int> squares(int n) {
    std::vector<int> out;
    for (int i = 0; i < n; ++i) out.push_back(i * i);
    return out;
}

std::vector<std::pair<int, int>> zipped(int n) {
    std::vector<std::pair<int, int>> out;
    for (int i = 0; i < n; ++i) out.emplace_back(i, n - 1 - i);
    return out;
}
std::vector<int> products(int n) {
    std::vector<int> out;
    for (auto [x, y] : zipped(n)) out.push_back(x * y);
    return out;
}

class ManagerPool : public mproc_test::ManagerFixture {
protected:
    void SetUp() override { manager_.start(); }
    // A pool of `processes` workers started by the method under test (CPython's _TestPool uses 4;
    // 2 keep the run short on a busy machine).
    mproc::PoolProxy make_pool(int processes = 2) {
        return manager_.Pool(mproc::ManagedPoolOptions{.processes = processes, .context = GetParam()});
    }
    mproc::SyncManager manager_{options()};
};

MPROC_MANAGER_TESTS_UNDER_EVERY_START_METHOD(ManagerPool);

// CPython: _TestPool.test_apply
TEST_P(ManagerPool, ApplyReturnsTheTasksResult) {
    auto pool = make_pool();
    EXPECT_EQ(pool.apply(sqr, 5), 25);
    EXPECT_EQ(pool.apply(mul, 3, 4), 12);
}

// CPython: _TestPool.test_map
TEST_P(ManagerPool, MapReturnsTheResultsInOrder) {
    auto pool = make_pool();
    EXPECT_EQ(pool.map(sqr, range(10)), squares(10));
    EXPECT_EQ(pool.map(sqr, range(100), 20), squares(100));
}

// CPython: _TestPool.test_starmap
TEST_P(ManagerPool, StarmapUnpacksEachItem) {
    auto pool = make_pool();
    EXPECT_EQ(pool.starmap(mul, zipped(10)), products(10));
    EXPECT_EQ(pool.starmap(mul, zipped(100), 20), products(100));
}

// CPython: _TestPool.test_starmap_async
TEST_P(ManagerPool, StarmapAsyncGetReturnsTheResults) {
    auto pool = make_pool();
    EXPECT_EQ(pool.starmap_async(mul, zipped(100)).get(), products(100));
}

// CPython: _TestPool.test_map_async
TEST_P(ManagerPool, MapAsyncGetReturnsTheResults) {
    auto pool = make_pool();
    auto result = pool.map_async(sqr, range(10));
    EXPECT_EQ(result.get(), squares(10));
    EXPECT_TRUE(result.ready());
    EXPECT_TRUE(result.successful());
}

// CPython: _TestPool.test_map_chunksize
TEST_P(ManagerPool, MapAsyncOfNothingWithAChunksizeIsReadyAtOnce) {
    auto pool = make_pool();
    EXPECT_EQ(pool.map_async(sqr, std::vector<int>{}, 1).get(30s), std::vector<int>{});
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { pool.map(sqr, range(3), 0); }), "Chunksize must be 1+, not 0");
}

// CPython: _TestPool.test_async
TEST_P(ManagerPool, ApplyAsyncIsReadyWhenTheTaskEnds) {
    auto pool = make_pool();
    auto go = manager_.Event();
    auto result = pool.apply_async(sqr_when_set, 7, go);
    EXPECT_FALSE(result.ready());
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { result.successful(); }), "the result is not ready");
    go.set();
    EXPECT_EQ(result.get(), 49);
    EXPECT_TRUE(result.ready());
    EXPECT_TRUE(result.successful());
}

// CPython: _TestPool.test_async_timeout
TEST_P(ManagerPool, GetWithATimeoutThrowsTimeoutErrorWhileTheTaskRuns) {
    auto pool = make_pool();
    auto go = manager_.Event();
    auto result = pool.apply_async(sqr_when_set, 6, go);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(result.get(200ms), mproc::TimeoutError);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
    EXPECT_FALSE(result.wait(10ms));
    go.set();
    EXPECT_TRUE(result.wait(30s));
    EXPECT_EQ(result.get(0s), 36);
}

// CPython: _TestPool.test_imap
TEST_P(ManagerPool, ImapYieldsTheResultsInOrder) {
    auto pool = make_pool();
    auto all = pool.imap(sqr, range(10));
    std::vector<int> got;
    for (int value : all) got.push_back(value);
    EXPECT_EQ(got, squares(10));

    auto one_by_one = pool.imap(sqr, range(10));
    for (int i = 0; i < 10; ++i) EXPECT_EQ(one_by_one.next(), i * i);
    EXPECT_EQ(one_by_one.next(), std::nullopt);

    auto chunked = pool.imap(sqr, range(1000), 100);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(chunked.next(30s), i * i);
    EXPECT_EQ(chunked.next(), std::nullopt);
}

TEST_P(ManagerPool, ImapNextWithATimeoutThrowsTimeoutErrorWhileTheTaskRuns) {
    auto pool = make_pool();
    auto go = manager_.Event();
    auto it = pool.imap(one_when_set, std::vector<mproc::EventProxy>{go});
    EXPECT_THROW(it.next(100ms), mproc::TimeoutError);
    go.set();
    EXPECT_EQ(it.next(30s), 1);
    EXPECT_EQ(it.next(), std::nullopt);
}

// CPython: _TestPool.test_imap_unordered
TEST_P(ManagerPool, ImapUnorderedYieldsEveryResult) {
    auto pool = make_pool();
    for (std::size_t chunksize : {std::size_t{1}, std::size_t{53}}) {
        std::vector<int> got;
        for (int value : pool.imap_unordered(sqr, range(1000), chunksize)) got.push_back(value);
        std::sort(got.begin(), got.end());
        EXPECT_EQ(got, squares(1000)) << "chunksize " << chunksize;
    }
}

// CPython: _TestPool.test_empty_iterable
TEST_P(ManagerPool, AnEmptyInputGivesNoResults) {
    auto pool = make_pool(1);
    EXPECT_EQ(pool.map(sqr, std::vector<int>{}), std::vector<int>{});
    EXPECT_EQ(pool.imap(sqr, std::vector<int>{}).next(), std::nullopt);
    EXPECT_EQ(pool.imap_unordered(sqr, std::vector<int>{}).next(), std::nullopt);
    EXPECT_EQ(pool.map_async(sqr, std::vector<int>{}).get(), std::vector<int>{});
    pool.close();
    pool.join();
}

// CPython: _TestPool.test_terminate
TEST_P(ManagerPool, TerminateStopsTheWorkersAndFailsWhatIsLeft) {
    auto pool = make_pool();
    auto never = manager_.Event();
    std::vector<std::pair<int, mproc::EventProxy>> items;
    for (int i = 0; i < 100; ++i) items.emplace_back(i, never);
    auto result = pool.starmap_async(wait_for_ever, items, 1);
    pool.terminate();
    pool.join();
    EXPECT_EQ(thrown_text<mproc::ProcessError>([&] { result.get(30s); }), "pool terminated");
    EXPECT_FALSE(result.successful());
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { pool.map(sqr, range(3)); }), "Pool not running");
}

TEST_P(ManagerPool, CallsAfterCloseAndJoinBeforeItAreValueErrors) {
    auto pool = make_pool();
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { pool.join(); }), "Pool is still running");
    auto result = pool.map_async(sqr, range(20));
    pool.close();
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { pool.map(sqr, range(3)); }), "Pool not running");
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { pool.apply_async(sqr, 2); }), "Pool not running");
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { pool.imap(sqr, std::vector<int>{}); }), "Pool not running");
    pool.join();
    // The work queued before close() ran.
    EXPECT_EQ(result.get(0s), squares(20));
}

// CPython: _TestPool.test_make_pool (Python's manager raises RemoteError wrapping the ValueError)
TEST_P(ManagerPool, APoolOfLessThanOneProcessIsAValueError) {
    for (int processes : {-1, 0}) {
        EXPECT_EQ(thrown_text<mproc::ValueError>([&] { make_pool(processes); }),
                  "Number of processes must be at least 1");
    }
    EXPECT_EQ(make_pool(3).processes(), 3);
}

// A task made by another program cannot run in this server: its code references would point into
// an executable the server does not run. Made by hand: what such a client would send.
TEST_P(ManagerPool, ATaskOfAnotherProgramIsRefused) {
    auto pool = make_pool(1);
    auto site = mproc::detail::wire_call_site(
        mproc::detail::call_site<int (*)(int)>(&mproc::detail::run_apply<int (*)(int), int>, &sqr));
    site.program = "another program";
    const mproc::Proxy raw(static_cast<const mproc::BaseProxy&>(pool));
    const auto text = thrown_text<mproc::UsageError>([&] {
        raw.call<std::uint64_t>("submit", site, mproc::detail::Blobs{mproc::dumps(std::tuple<int>(3))},
                                mproc::detail::PoolJobKind::apply);
    });
    EXPECT_NE(text.find("a managed Pool's task is code of another program"), std::string::npos) << text;
    EXPECT_EQ(pool.apply(sqr, 3), 9);  // the pool still serves the same program's tasks
}

// CPython: _TestPool.test_wrapped_exception
TEST_P(ManagerPool, ATasksExceptionKeepsItsKind) {
    auto pool = make_pool(1);
    auto runtime = [&] {
        try {
            pool.apply(raise_runtime_error);
        } catch (const mproc::RemoteError& e) {
            return e.type_name() + " / " + e.message();
        }
        return std::string("nothing thrown");
    };
    EXPECT_EQ(runtime(), "std::runtime_error / foo");
    EXPECT_EQ(thrown_text<mproc::KeyError>([&] { pool.apply(raise_key_error); }), "'key'");
    auto failed = pool.apply_async(raise_value_error, 4);
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { failed.get(); }), "bad value 4");
    EXPECT_FALSE(failed.successful());
    // The pool goes on.
    EXPECT_EQ(pool.apply(sqr, 3), 9);
}

// CPython: _TestPool.test_map_no_failfast
TEST_P(ManagerPool, AFailedMapLeavesAPoolThatCloseAndJoinEnd) {
    auto pool = make_pool();
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { pool.map(raise_value_error, std::vector<int>{0, 1}); }).substr(0, 10),
              "bad value ");
    pool.close();
    pool.join();
}

// CPython: _TestPool.test_release_task_refs (what the server keeps for a call goes with its proxy)
TEST_P(ManagerPool, AResultIsReleasedWithItsLastProxy) {
    auto pool = make_pool();
    const std::size_t before = manager_.number_of_objects();
    {
        auto result = pool.map_async(sqr, range(10));
        EXPECT_EQ(manager_.number_of_objects(), before + 1);
        EXPECT_EQ(result.get(), squares(10));
        auto it = pool.imap(sqr, range(3));
        EXPECT_EQ(manager_.number_of_objects(), before + 2);
    }
    EXPECT_EQ(pool.map(sqr, range(10)), squares(10));
    EXPECT_EQ(manager_.number_of_objects(), before);
}

void use_pool_in_child(mproc::PoolProxy pool) {
    require(pool.map(sqr, range(10)) == squares(10), "map in the child");
    pool.terminate();
}

// CPython: TestSyncManagerTypes.test_pool
TEST_P(ManagerPool, APoolProxyWorksInAChild) {
    auto pool = make_pool(4);
    run_worker(use_pool_in_child, pool);
    EXPECT_EQ(thrown_text<mproc::ValueError>([&] { pool.apply(sqr, 2); }), "Pool not running");
    pool.join();
}

void get_in_child(mproc::AsyncResultProxy<std::vector<int>> result, mproc::EventProxy go) {
    require(!result.ready(), "not ready before go");
    go.set();
    require(result.get() == std::vector<int>{4, 9}, "the result in the child");
}

TEST_P(ManagerPool, AResultProxyCanBeReadInAChild) {
    auto pool = make_pool();
    auto go = manager_.Event();
    auto result = pool.starmap_async(sqr_when_set, std::vector<std::pair<int, mproc::EventProxy>>{{2, go}, {3, go}});
    run_worker(get_in_child, result, go);
    EXPECT_EQ(result.get(), (std::vector<int>{4, 9}));
}

}  // namespace

namespace {

// The server ends on a shutdown request while a pool still has workers: its workers go with it.
TEST_P(ManagerPool, ShutdownWithALivePoolEndsTheServerAtTheRequest) {
    auto pool = make_pool();
    auto never = manager_.Event();
    auto held = pool.apply_async(wait_for_ever, 1, never);
    EXPECT_EQ(pool.map(sqr, range(4)), squares(4));
    manager_.shutdown();
    EXPECT_EQ(manager_.process()->exitcode(), 0);
}

}  // namespace
