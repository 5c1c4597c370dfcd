// Pool: the cases of CPython's Lib/test/_test_multiprocessing.py (_TestPool,
// _TestPoolWorkerErrors, _TestPoolWorkerLifetime and the pool cases of other classes) that apply
// to mproc, under every start method. Each test names its origin; /work/notes/ported_pool.md (the
// tally) says why the others do not apply.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "helpers/pool_test_helpers.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"

using namespace std::chrono_literals;

namespace {

int sqr(int x) { return x * x; }
int mul(int x, int y) { return x * y; }
int slow_sqr(int x, int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return x * x;
}
int parse_int(const std::string& text) { return std::stoi(text); }  // Python's int(): throws on "a"
int raising() { throw std::out_of_range("key"); }
int raise_large_error(int) { throw std::invalid_argument(std::string(1 << 20, 'x')); }
void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Python's SayWhenError: what the input throws.
struct SayWhenError : std::runtime_error {
    SayWhenError() : std::runtime_error("Somebody said when") {}
};

// Python's exception_throwing_generator(total, when): 0, 1, ... total-1, throwing at `when`
// (at the very first item for -1).
auto exception_throwing_generator(int total, int when) {
    return std::views::iota(0, total) | std::views::transform([when](int i) {
               if (i == when || when == -1) throw SayWhenError();
               return i;
           });
}

// A value that cannot be encoded: an argument (test_map_unplicklable) or a result
// (test_unpickleable_result).
struct Unencodable {
    int value = 0;
    template <class Archive>
    void save(Archive&) const {
        throw std::runtime_error("cannot encode");
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(value);
    }
};
int take_unencodable(Unencodable u) { return u.value; }
Unencodable unencodable_result() { return Unencodable{}; }

// Applies `task`, which fails, with an error callback: get() raises TaskError, and the callback
// saw the error, which is returned.
template <class R>
std::exception_ptr error_from_callback(mproc::Pool& pool, R (*task)()) {
    std::exception_ptr seen;
    mproc::ApplyOptions<R> o;
    o.error_callback = [&seen](const std::exception_ptr& e) { seen = e; };
    auto res = pool.apply_async(o, task);
    EXPECT_THROW(res.get(), mproc::TaskError);
    return seen;
}

// The pids of the pool's live workers.
std::set<int> live_worker_pids(const mproc::Pool& pool) {
    std::set<int> pids;
    for (auto& w : pool.workers())
        if (w.is_alive()) pids.insert(*w.pid());
    return pids;
}

std::vector<int> squares(int n) {
    std::vector<int> out;
    for (int i = 0; i < n; ++i) out.push_back(i * i);
    return out;
}

class CPythonPoolTest : public mproc_test::PoolFixture {
protected:
    // _TestPool shares one pool of 4 among its tests.
    mproc::Pool pool_{options(4)};
};

class CPythonPoolLifetimeTest : public mproc_test::PoolFixture {
protected:
    // Workers that retire after `maxtasks` tasks.
    mproc::PoolOptions recycled(int processes, int maxtasks) {
        auto o = options(processes);
        o.maxtasksperchild = maxtasks;
        return o;
    }
};

}  // namespace

MPROC_POOL_TESTS_UNDER_EVERY_START_METHOD(CPythonPoolTest);
MPROC_POOL_TESTS_UNDER_EVERY_START_METHOD(CPythonPoolLifetimeTest);

// CPython: _TestPool.test_apply
TEST_P(CPythonPoolTest, Apply) {
    EXPECT_EQ(pool_.apply(sqr, 5), 25);
    EXPECT_EQ(pool_.apply(sqr, 3), 9);
}

// CPython: _TestPool.test_map
TEST_P(CPythonPoolTest, Map) {
    EXPECT_EQ(pool_.map(sqr, std::views::iota(0, 10)), squares(10));
    EXPECT_EQ(pool_.map(sqr, std::views::iota(0, 100), 20), squares(100));
}

// CPython: _TestPool.test_starmap
TEST_P(CPythonPoolTest, Starmap) {
    for (int n : {10, 100}) {
        std::vector<std::tuple<int, int>> tuples;
        std::vector<int> expected;
        for (int i = 0; i < n; ++i) {
            tuples.emplace_back(i, n - 1 - i);
            expected.push_back(i * (n - 1 - i));
        }
        mproc::MapOptions<int> o;
        if (n == 100) o.chunksize = 20;
        EXPECT_EQ(pool_.starmap(mul, tuples, o), expected);
    }
}

// CPython: _TestPool.test_starmap_async
TEST_P(CPythonPoolTest, StarmapAsync) {
    std::vector<std::tuple<int, int>> tuples;
    std::vector<int> expected;
    for (int i = 0; i < 100; ++i) {
        tuples.emplace_back(i, 99 - i);
        expected.push_back(i * (99 - i));
    }
    EXPECT_EQ(pool_.starmap_async(mul, tuples).get(), expected);
}

// CPython: _TestPool.test_map_async
TEST_P(CPythonPoolTest, MapAsync) { EXPECT_EQ(pool_.map_async(sqr, std::views::iota(0, 10)).get(), squares(10)); }

// CPython: _TestPool.test_map_async_callbacks
TEST_P(CPythonPoolTest, MapAsyncCallbacks) {
    std::vector<std::vector<int>> values;
    std::vector<std::exception_ptr> errors;
    mproc::MapOptions<int> o;
    o.callback = [&values](const std::vector<int>& v) { values.push_back(v); };
    o.error_callback = [&errors](const std::exception_ptr& e) { errors.push_back(e); };
    pool_.map_async(parse_int, std::vector<std::string>{"1"}, o).wait();
    ASSERT_EQ(values.size() + errors.size(), 1u);
    ASSERT_EQ(values.size(), 1u);
    EXPECT_EQ(values[0], std::vector<int>{1});
    pool_.map_async(parse_int, std::vector<std::string>{"a"}, o).wait();
    ASSERT_EQ(values.size() + errors.size(), 2u);
    ASSERT_EQ(errors.size(), 1u);
    try {
        std::rethrow_exception(errors[0]);
    } catch (const mproc::TaskError& e) {
        EXPECT_EQ(e.type_name(), "std::invalid_argument");  // Python: ValueError
    }
}

// CPython: _TestPool.test_map_unplicklable (an argument that cannot be encoded must not hang)
TEST_P(CPythonPoolTest, MapOfAnUnencodableArgumentRaisesAndDoesNotHang) {
    EXPECT_THROW(pool_.map(take_unencodable, std::vector<Unencodable>(10)), std::runtime_error);
    EXPECT_EQ(pool_.apply(sqr, 4), 16);
}

// CPython: _TestPool.test_map_chunksize
TEST_P(CPythonPoolTest, MapAsyncOfAnEmptyInputWithAChunksizeDoesNotStall) {
    mproc::MapOptions<int> o;
    o.chunksize = 1;
    EXPECT_EQ(pool_.map_async(sqr, std::vector<int>{}, o).get(10s), std::vector<int>{});
}

// CPython: _TestPool.test_map_handle_iterable_exception
// map reads its input before sending anything: the input's own exception comes out of the call.
TEST_P(CPythonPoolTest, MapRaisesTheInputsException) {
    EXPECT_THROW(pool_.map(sqr, exception_throwing_generator(1, -1), 1), SayWhenError);
    EXPECT_THROW(pool_.map(sqr, exception_throwing_generator(1, -1), 1), SayWhenError) << "reentrant";
    EXPECT_THROW(pool_.map(sqr, exception_throwing_generator(10, 3), 1), SayWhenError);
    // Python's SpecialIterable: a sized input whose iteration throws.
    auto special = std::views::iota(0, 1) | std::views::transform([](int) -> int { throw SayWhenError(); });
    EXPECT_THROW(pool_.map(sqr, special, 1), SayWhenError);
    EXPECT_THROW(pool_.map(sqr, special, 1), SayWhenError);
    EXPECT_THROW(pool_.map_async(sqr, exception_throwing_generator(10, 3)), SayWhenError);
    EXPECT_EQ(pool_.map(sqr, std::views::iota(0, 3)), squares(3)) << "the pool survived";
}

// CPython: _TestPool.test_async
TEST_P(CPythonPoolTest, ApplyAsync) {
    auto res = pool_.apply_async(slow_sqr, 7, 100);
    EXPECT_EQ(res.get(), 49);
}

// CPython: _TestPool.test_async_timeout
TEST_P(CPythonPoolTest, ApplyAsyncGetTimesOut) {
    mproc::Pool p(options(3));
    auto res = p.apply_async(slow_sqr, 6, 30'000);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(res.get(200ms), mproc::TimeoutError);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
    p.terminate();
    p.join();
}

// CPython: _TestPool.test_imap
TEST_P(CPythonPoolTest, Imap) {
    std::vector<int> all;
    for (int v : pool_.imap(sqr, std::views::iota(0, 10))) all.push_back(v);
    EXPECT_EQ(all, squares(10));

    auto it = pool_.imap(sqr, std::views::iota(0, 10));
    for (int i = 0; i < 10; ++i) EXPECT_EQ(it.next(), i * i);
    EXPECT_EQ(it.next(), std::nullopt);  // Python: StopIteration

    auto chunked = pool_.imap(sqr, std::views::iota(0, 1000), 100);
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(chunked.next(), i * i);
    EXPECT_EQ(chunked.next(), std::nullopt);
}

// CPython: _TestPool.test_imap_handle_iterable_exception
TEST_P(CPythonPoolTest, ImapDeliversTheResultsBeforeTheInputsException) {
    auto first = pool_.imap(sqr, exception_throwing_generator(1, -1), 1);
    EXPECT_THROW(first.next(), SayWhenError);
    auto again = pool_.imap(sqr, exception_throwing_generator(1, -1), 1);
    EXPECT_THROW(again.next(), SayWhenError);

    auto it = pool_.imap(sqr, exception_throwing_generator(10, 3), 1);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(it.next(), i * i);
    EXPECT_THROW(it.next(), SayWhenError);
    EXPECT_EQ(it.next(), std::nullopt) << "the iteration ends at the input's exception";

    // The chunk being gathered when the input threw is dropped, as in Python.
    auto pairs = pool_.imap(sqr, exception_throwing_generator(20, 7), 2);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(pairs.next(), i * i);
    EXPECT_THROW(pairs.next(), SayWhenError);
    auto fours = pool_.imap(sqr, exception_throwing_generator(20, 7), 4);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(fours.next(), i * i);
    EXPECT_THROW(fours.next(), SayWhenError);
}

// CPython: _TestPool.test_imap_unordered
TEST_P(CPythonPoolTest, ImapUnordered) {
    for (std::size_t chunksize : {std::size_t{1}, std::size_t{100}}) {
        const int n = chunksize == 1 ? 10 : 1000;
        std::vector<int> all;
        for (int v : pool_.imap_unordered(sqr, std::views::iota(0, n), chunksize)) all.push_back(v);
        std::sort(all.begin(), all.end());
        EXPECT_EQ(all, squares(n));
    }
}

// CPython: _TestPool.test_imap_unordered_handle_iterable_exception
// mproc raises the input's exception after every result of the items taken before it.
TEST_P(CPythonPoolTest, ImapUnorderedDeliversTheResultsBeforeTheInputsException) {
    auto first = pool_.imap_unordered(sqr, exception_throwing_generator(1, -1), 1);
    EXPECT_THROW(first.next(), SayWhenError);
    auto again = pool_.imap_unordered(sqr, exception_throwing_generator(1, -1), 1);
    EXPECT_THROW(again.next(), SayWhenError);

    for (auto [total, when, chunksize, before] : {std::tuple{10, 3, 1, 3}, std::tuple{20, 7, 2, 6}}) {
        auto it = pool_.imap_unordered(sqr, exception_throwing_generator(total, when), static_cast<std::size_t>(chunksize));
        std::vector<int> got;
        try {
            while (auto v = it.next(10s)) got.push_back(*v);
            ADD_FAILURE() << "the input's exception was lost";
        } catch (const SayWhenError&) {
        }
        std::sort(got.begin(), got.end());
        EXPECT_EQ(got, squares(before));
        EXPECT_EQ(it.next(), std::nullopt);
    }
}

// CPython: _TestPool.test_make_pool
TEST_P(CPythonPoolTest, MakePool) {
    for (int processes : {-1, 0}) EXPECT_THROW(mproc::Pool bad(options(processes)), mproc::UsageError);
    mproc::Pool p(options(3));
    EXPECT_EQ(p.workers().size(), 3u);
    p.close();
    p.join();
}

// CPython: _TestPool.test_terminate (tasks that would run "forever" do not hold up terminate)
TEST_P(CPythonPoolTest, TerminateDoesNotWaitForTheTasks) {
    mproc::Pool p(options(3));
    mproc::MapOptions<mproc::None> o;
    o.chunksize = 1;
    auto result = p.map_async(sleep_ms, std::vector<int>(10'000, 60'000), o);
    const auto start = std::chrono::steady_clock::now();
    p.terminate();
    p.join();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
    ASSERT_TRUE(result.ready());
    EXPECT_THROW(result.get(), mproc::ProcessError);
}

// CPython: _TestPool.test_empty_iterable
TEST_P(CPythonPoolTest, EmptyIterable) {
    mproc::Pool p(options(1));
    EXPECT_EQ(p.map(sqr, std::vector<int>{}), std::vector<int>{});
    EXPECT_EQ(p.imap(sqr, std::vector<int>{}).next(), std::nullopt);
    EXPECT_EQ(p.imap_unordered(sqr, std::vector<int>{}).next(), std::nullopt);
    EXPECT_EQ(p.map_async(sqr, std::vector<int>{}).get(), std::vector<int>{});
    p.close();
    p.join();
}

// CPython: _TestPool.test_context (leaving `with Pool() as p:` is terminate(); then the pool
// refuses work)
TEST_P(CPythonPoolTest, ATerminatedPoolRefusesWork) {
    mproc::Pool p(options(2));
    EXPECT_EQ(p.map_async(sqr, std::views::iota(0, 10)).get(), squares(10));
    p.terminate();
    p.join();
    try {
        p.map_async(sqr, std::views::iota(0, 10));
        ADD_FAILURE() << "no error";
    } catch (const mproc::UsageError& e) {
        EXPECT_STREQ(e.what(), "Pool not running");
    }
}

// CPython: _TestPool.test_traceback (its second half: the input's exception is not wrapped as a
// remote one) and _TestPool.test_wrapped_exception (a task's exception: mproc's TaskError with the
// type and message, a deliberate difference in docs/differences.md)
TEST_P(CPythonPoolTest, TaskErrorsAreWrappedAndInputErrorsAreNot) {
    mproc::Pool p(options(1));
    try {
        p.apply(raising);
        ADD_FAILURE() << "no error";
    } catch (const mproc::TaskError& e) {
        EXPECT_EQ(e.type_name(), "std::out_of_range");
        EXPECT_EQ(e.message(), "key");
    }
    try {
        p.map(sqr, exception_throwing_generator(1, -1), 1);
        ADD_FAILURE() << "no error";
    } catch (const mproc::TaskError&) {
        ADD_FAILURE() << "the input's exception came back wrapped";
    } catch (const SayWhenError&) {
    }
}

// CPython: _TestPool.test_map_no_failfast (failing tasks with large errors must not make join()
// deadlock)
TEST_P(CPythonPoolTest, MapWithLargeErrorsThenCloseAndJoin) {
    mproc::Pool p(options(2));
    try {
        p.map(raise_large_error, std::vector<int>{0, 1});
        ADD_FAILURE() << "no error";
    } catch (const mproc::TaskError& e) {
        EXPECT_EQ(e.message().size(), std::size_t{1} << 20);
    }
    p.close();
    p.join();
}

// CPython: _TestPoolWorkerErrors.test_async_error_callback
TEST_P(CPythonPoolTest, AsyncErrorCallback) {
    mproc::Pool p(options(2));
    const std::exception_ptr seen = error_from_callback(p, raising);
    ASSERT_TRUE(seen);
    EXPECT_THROW(std::rethrow_exception(seen), mproc::TaskError);
    p.close();
    p.join();
}

// CPython: _TestPoolWorkerErrors.test_unpickleable_result (Python's MaybeEncodingError is a
// TaskError here; the workers survive it)
TEST_P(CPythonPoolTest, UnencodableResult) {
    mproc::Pool p(options(2));
    const std::set<int> before = live_worker_pids(p);
    for (int iteration = 0; iteration < 20; ++iteration) {
        const std::exception_ptr seen = error_from_callback(p, unencodable_result);
        ASSERT_TRUE(seen);
        try {
            std::rethrow_exception(seen);
        } catch (const mproc::TaskError& e) {
            EXPECT_EQ(e.message(), "cannot encode");
        }
    }
    EXPECT_EQ(live_worker_pids(p), before) << "a result that could not be encoded cost a worker";
    p.close();
    p.join();
}

// CPython: _TestPoolWorkerLifetime.test_pool_worker_lifetime
TEST_P(CPythonPoolLifetimeTest, WorkersAreReplacedAfterMaxtasksperchild) {
    mproc::Pool p(recycled(3, 10));
    ASSERT_EQ(p.workers().size(), 3u);
    const std::set<int> original = live_worker_pids(p);
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 100; ++i) results.push_back(p.apply_async(sqr, i));
    for (int j = 0; j < 100; ++j) EXPECT_EQ(results[static_cast<std::size_t>(j)].get(), j * j);
    // The pool keeps three workers, and they are not the first three any more.
    std::set<int> final_pids;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
        final_pids = live_worker_pids(p);
        if (final_pids.size() == 3u || std::chrono::steady_clock::now() > deadline) break;
        std::this_thread::sleep_for(1ms);  // polls for the state, with a deadline
    }
    EXPECT_EQ(final_pids.size(), 3u);
    EXPECT_NE(final_pids, original);
    p.close();
    p.join();
}

// CPython: _TestPoolWorkerLifetime.test_pool_worker_lifetime_early_close
TEST_P(CPythonPoolLifetimeTest, EarlyCloseWithMaxtasksperchildRunsEveryTask) {
    mproc::Pool p(recycled(3, 1));
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 6; ++i) results.push_back(p.apply_async(slow_sqr, i, 300));
    p.close();
    p.join();
    for (int j = 0; j < 6; ++j) {
        ASSERT_TRUE(results[static_cast<std::size_t>(j)].ready());
        EXPECT_EQ(results[static_cast<std::size_t>(j)].get(), j * j);
    }
}

// CPython: _TestPoolWorkerLifetime.test_pool_maxtasksperchild_invalid (0.5 and "12" cannot be
// written in C++)
TEST_P(CPythonPoolLifetimeTest, InvalidMaxtasksperchild) {
    for (int value : {0, -1}) {
        try {
            mproc::Pool p(recycled(3, value));
            ADD_FAILURE() << value;
        } catch (const mproc::UsageError& e) {
            EXPECT_STREQ(e.what(), "maxtasksperchild must be a positive int or None");
        }
    }
}

namespace {

// A process that leaves its pool running when its target returns (Python: a pool held by a
// global at interpreter exit); the exit sequence must end the pool and the process exit 0.
void leave_a_pool_running(int method) {
    auto* pool = new mproc::Pool({.processes = 1, .context = static_cast<mproc::StartMethod>(method)});
    std::vector<int> floats = pool->map(sqr, std::views::iota(0, 10));
    if (floats.size() != 10) std::abort();
}

// CPython's pool_in_process: a pool used and closed inside a child.
void pool_in_process(int method) {
    mproc::Pool pool({.processes = 4, .context = static_cast<mproc::StartMethod>(method)});
    auto x = pool.map(sqr, std::vector<int>{1, 2, 3, 4, 5, 6, 7});
    pool.close();
    pool.join();
    if (x != std::vector<int>{1, 4, 9, 16, 25, 36, 49}) std::abort();
}

void put_one(mproc::Queue<int> queue) { queue.put(1); }

}  // namespace

// CPython: _TestPoolWorkerLifetime.test_worker_finalization_via_atexit_handler_of_multiprocessing
TEST_P(CPythonPoolLifetimeTest, APoolLeftRunningAtExitIsFinalized) {
    mproc::Process child(mproc::ProcessOptions{.start_method = GetParam()}, leave_a_pool_running, static_cast<int>(GetParam()));
    child.start();
    child.join(60s);
    EXPECT_EQ(child.exitcode(), 0);
}

// CPython: TestStdinBadfiledescriptor.test_pool_in_process
TEST_P(CPythonPoolLifetimeTest, PoolInAChildProcess) {
    mproc::Process child(mproc::ProcessOptions{.start_method = GetParam()}, pool_in_process, static_cast<int>(GetParam()));
    child.start();
    child.join(60s);
    EXPECT_EQ(child.exitcode(), 0);
}

// CPython: TestInitializers.test_pool_initializer (Python's TypeError for initializer=1 is a
// compile-time error here)
TEST_P(CPythonPoolLifetimeTest, PoolInitializer) {
    mproc::Queue<int> queue;
    auto o = options(1);
    o.initializer = {put_one, queue};
    mproc::Pool p(o);
    p.close();
    p.join();
    EXPECT_EQ(queue.get(true, 10s), 1);
}

// CPython: _test_multiprocessing's test_large_pool (gh-89240: many workers are fine)
TEST_P(CPythonPoolLifetimeTest, LargePool) {
    mproc::Pool p(options(64));
    const auto results = p.map(sqr, std::views::iota(0, 1000));
    long long sum = 0;
    for (int v : results) sum += v;
    EXPECT_EQ(sum, 332833500);
    p.close();
    p.join();
}
