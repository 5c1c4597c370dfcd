// Managers within one process and its children (fork): the proxies' API and Python's semantics,
// spec/python_api.md §8.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/managers.hpp"
#include "mproc/pool.hpp"

using namespace std::chrono_literals;

namespace {

class Counter {
public:
    Counter() = default;
    explicit Counter(int start) : value_(start) {}
    int increment(int by) { return value_ += by; }
    int get() const { return value_; }
    void fail() { throw std::invalid_argument("counter refuses"); }
    int secret() const { return 42; }

private:
    int value_ = 0;
};

TEST(Manager, ServerProcessIsNamedAndEndsAtShutdown) {
    mproc::SyncManager manager = mproc::Manager();
    auto server = manager.process();
    ASSERT_TRUE(server.has_value());
    EXPECT_EQ(server->name().rfind("SyncManager-", 0), 0u) << server->name();
    EXPECT_TRUE(server->is_alive());
    manager.shutdown();
    EXPECT_FALSE(server->is_alive());
    EXPECT_EQ(server->exitcode(), 0);  // it ended on the request, not by a signal
    manager.shutdown();                // idempotent
}

TEST(Manager, DestructorStopsTheServer) {
    std::optional<mproc::Process> server;
    {
        mproc::SyncManager manager = mproc::Manager();
        server = manager.process();
    }
    EXPECT_FALSE(server->is_alive());
    EXPECT_EQ(server->exitcode(), 0);
}

TEST(Manager, DictBasics) {
    auto manager = mproc::Manager();
    auto d = manager.dict<std::string, int>();
    d["a"] = 1;
    d.set("b", 2);
    EXPECT_EQ(static_cast<int>(d["a"]), 1);
    EXPECT_EQ(d.getitem("b"), 2);
    EXPECT_EQ(d.get("zz"), std::nullopt);
    EXPECT_EQ(d.get("zz", 7), 7);
    EXPECT_TRUE(d.contains("a"));
    EXPECT_FALSE(d.contains("zz"));
    EXPECT_EQ(d.size(), 2u);
    EXPECT_EQ(d.keys(), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(d.values(), (std::vector<int>{1, 2}));
    d.update({{"c", 3}, {"a", 10}});
    EXPECT_EQ(d.items(), (std::vector<std::pair<std::string, int>>{{"a", 10}, {"b", 2}, {"c", 3}}));
    EXPECT_EQ(d.str(), "{'a': 10, 'b': 2, 'c': 3}");
    EXPECT_EQ(d.pop("b"), 2);
    EXPECT_EQ(d.pop("b", -1), -1);
    EXPECT_EQ(d.setdefault("e", 5), 5);
    EXPECT_EQ(d.setdefault("e", 6), 5);
    EXPECT_EQ(d.popitem(), (std::pair<std::string, int>{"e", 5}));
    auto copy = d.copy();
    EXPECT_EQ(copy, (std::map<std::string, int>{{"a", 10}, {"c", 3}}));
    d.erase("a");
    EXPECT_EQ(d.size(), 1u);
    d.clear();
    EXPECT_TRUE(d.empty());
    EXPECT_EQ(d.str(), "{}");
}

TEST(Manager, DictMissingKeyIsKeyErrorWithTheKeysRepr) {
    auto manager = mproc::Manager();
    auto d = manager.dict<std::string, int>();
    try {
        d.getitem("nope");
        FAIL() << "no KeyError";
    } catch (const mproc::KeyError& e) {
        EXPECT_STREQ(e.what(), "'nope'");
    }
    EXPECT_THROW(d.pop("nope"), mproc::KeyError);
    EXPECT_THROW(d.erase("nope"), mproc::KeyError);
    EXPECT_THROW(d.popitem(), mproc::KeyError);
}

TEST(Manager, ListBasics) {
    auto manager = mproc::Manager();
    auto l = manager.list<std::string>();
    l.append("0");
    l.extend({"1", "2", "3"});
    EXPECT_EQ(l.str(), "['0', '1', '2', '3']");
    EXPECT_EQ(l.size(), 4u);
    EXPECT_EQ(l.index("2"), 2u);
    EXPECT_EQ(static_cast<std::string>(l[-1]), "3");
    l[0] = "zero";
    EXPECT_EQ(l.getitem(0), "zero");
    l.insert(1, "half");
    l.insert(100, "end");  // clamped, as Python does
    EXPECT_EQ(l.copy(), (std::vector<std::string>{"zero", "half", "1", "2", "3", "end"}));
    EXPECT_EQ(l.slice(1, 3), (std::vector<std::string>{"half", "1"}));
    EXPECT_EQ(l.slice(-2, 100), (std::vector<std::string>{"3", "end"}));
    EXPECT_EQ(l.pop(), "end");
    EXPECT_EQ(l.pop(0), "zero");
    l.remove("half");
    EXPECT_EQ(l.count("1"), 1u);
    EXPECT_TRUE(l.contains("2"));
    l.reverse();
    EXPECT_EQ(l.copy(), (std::vector<std::string>{"3", "2", "1"}));
    EXPECT_THROW(l.getitem(3), mproc::IndexError);
    EXPECT_THROW(l.set(-4, "x"), mproc::IndexError);
    EXPECT_THROW(l.index("nope"), mproc::ValueError);
    EXPECT_THROW(l.remove("nope"), mproc::ValueError);
    l.clear();
    EXPECT_THROW(l.pop(), mproc::IndexError);
}

// The texts of Python 3.11-3.13's errors for the same calls on a managed list and Array.
template <class F>
std::string error_text(F&& call) {
    try {
        call();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "no error";
}

TEST(Manager, ListAndArrayErrorsCarryPythonsMessages) {
    auto manager = mproc::Manager();
    auto words = manager.list<std::string>(std::vector<std::string>{"a"});
    auto numbers = manager.list<int>(std::vector<int>{1, 2});
    EXPECT_THROW(numbers.index(5), mproc::ValueError);
    EXPECT_EQ(error_text([&] { numbers.index(5); }), "5 is not in list");
    EXPECT_EQ(error_text([&] { words.index("zz"); }), "'zz' is not in list");
    EXPECT_EQ(error_text([&] { numbers.remove(5); }), "list.remove(x): x not in list");
    EXPECT_EQ(error_text([&] { numbers.pop(5); }), "pop index out of range");
    EXPECT_EQ(error_text([&] { manager.list<int>().pop(); }), "pop from empty list");
    EXPECT_EQ(error_text([&] { numbers.set(9, 1); }), "list assignment index out of range");
    EXPECT_EQ(error_text([&] { numbers.getitem(9); }), "list index out of range");
    auto array = manager.Array<int>(1);
    EXPECT_EQ(error_text([&] { array.getitem(3); }), "array index out of range");
    EXPECT_EQ(error_text([&] { array.set(3, 1); }), "array assignment index out of range");
}

TEST(Manager, SliceIsACopy) {
    auto manager = mproc::Manager();
    auto l = manager.list<int>(std::vector<int>{1, 2, 3});
    auto part = l.slice(0, 2);
    part[0] = 100;
    EXPECT_EQ(l.getitem(0), 1);
}

TEST(Manager, NamespaceAttributesAndTheMutableGotcha) {
    auto manager = mproc::Manager();
    auto ns = manager.Namespace();
    ns.set("x", 10);
    ns.set("name", "hello");
    EXPECT_EQ(ns.get<int>("x"), 10);
    EXPECT_EQ(ns.get<std::string>("name"), "hello");
    try {
        ns.get<int>("value");
        FAIL() << "no AttributeError";
    } catch (const mproc::AttributeError& e) {
        EXPECT_STREQ(e.what(), "'Namespace' object has no attribute 'value'");
    }
    EXPECT_THROW(ns.get<std::string>("x"), mproc::DecodeError);
    ns.set("my_list", std::vector<std::string>{});
    auto copy = ns.get<std::vector<std::string>>("my_list");
    copy.push_back("This is the value");
    EXPECT_TRUE(ns.get<std::vector<std::string>>("my_list").empty());
    EXPECT_EQ(ns.names(), (std::vector<std::string>{"x", "name", "my_list"}));
    ns.erase("x");
    EXPECT_FALSE(ns.contains("x"));
    EXPECT_THROW(ns.erase("x"), mproc::AttributeError);
}

TEST(Manager, ValueAndArray) {
    auto manager = mproc::Manager();
    auto v = manager.Value<double>(1.5);
    EXPECT_EQ(v.get(), 1.5);
    v.set(2.5);
    EXPECT_EQ(v.value(), 2.5);
    auto a = manager.Array<int>(3, 7);
    EXPECT_EQ(a.size(), 3u);
    a[1] = 9;
    EXPECT_EQ(a.copy(), (std::vector<int>{7, 9, 7}));
    EXPECT_THROW(a.getitem(3), mproc::IndexError);
    // An Array exposes only len, get and set, as Python's ArrayProxy.
    EXPECT_THROW(a.callmethod("append", {mproc::dumps(1)}), mproc::AttributeError);
}

TEST(Manager, QueueAndJoinableQueue) {
    auto manager = mproc::Manager();
    auto q = manager.Queue<int>(2);
    q.put(1);
    q.put_nowait(2);
    EXPECT_TRUE(q.full());
    EXPECT_THROW(q.put(3, 20ms), mproc::Full);
    EXPECT_EQ(q.qsize(), 2u);
    EXPECT_EQ(q.get(), 1);
    EXPECT_EQ(q.get_nowait(), 2);
    EXPECT_THROW(q.get(20ms), mproc::Empty);
    EXPECT_THROW(q.get_nowait(), mproc::Empty);

    auto jq = manager.JoinableQueue<std::string>();
    jq.put("task");
    // The task is done only once join() is blocked (its thread reading the server's reply).
    std::atomic<bool> done{false};
    std::thread worker([jq, &done, main_thread = mproc::testing::this_thread_id()] {
        EXPECT_EQ(jq.get(), "task");
        EXPECT_TRUE(mproc::testing::wait_until_blocked(main_thread, mproc::testing::wchan::unix_socket_read));
        done = true;
        jq.task_done();
    });
    jq.join();
    EXPECT_TRUE(done) << "join() returned before the task was done";
    worker.join();
    EXPECT_THROW(jq.task_done(), mproc::ValueError);
}

TEST(Manager, LocksAndSemaphores) {
    auto manager = mproc::Manager();
    auto lock = manager.Lock();
    EXPECT_TRUE(lock.acquire());
    EXPECT_FALSE(lock.acquire(false));
    EXPECT_FALSE(lock.acquire(20ms));
    lock.release();
    EXPECT_THROW(lock.release(), mproc::UsageError);
    { std::scoped_lock guard(lock); }

    auto rlock = manager.RLock();
    EXPECT_TRUE(rlock.acquire());
    EXPECT_TRUE(rlock.acquire());  // the same thread, again
    std::thread other([rlock] {
        EXPECT_FALSE(rlock.acquire(false));           // another thread has its own connection
        EXPECT_THROW(rlock.release(), mproc::UsageError);  // and does not own it
    });
    other.join();
    rlock.release();
    rlock.release();

    auto sem = manager.BoundedSemaphore(2);
    EXPECT_TRUE(sem.acquire());
    EXPECT_TRUE(sem.acquire());
    EXPECT_FALSE(sem.acquire(false));
    sem.release();
    sem.release();
    EXPECT_THROW(sem.release(), mproc::ValueError);
    auto plain = manager.Semaphore(0);
    plain.release();  // unbounded
    plain.release();
    EXPECT_TRUE(plain.acquire(false));
}

TEST(Manager, EventConditionBarrier) {
    auto manager = mproc::Manager();
    auto event = manager.Event();
    EXPECT_FALSE(event.is_set());
    EXPECT_FALSE(event.wait(20ms));
    // Set once wait() is blocked (its thread reading the server's reply).
    std::thread setter = mproc::testing::act_once_blocked(mproc::testing::this_thread_id(),
                                                          mproc::testing::wchan::unix_socket_read, [event] { event.set(); });
    event.wait();
    EXPECT_TRUE(event.is_set());
    setter.join();
    event.clear();
    EXPECT_FALSE(event.is_set());

    auto cond = manager.Condition();
    auto flag = manager.Value<int>(0);
    std::optional<std::thread> notifier;
    {
        std::unique_lock guard(cond);
        // The notifier gets the lock only once wait_for() has released it: it notifies a waiter.
        notifier.emplace([cond, flag] {
            std::scoped_lock notifier_guard(cond);
            flag.set(1);
            cond.notify_all();
        });
        EXPECT_TRUE(cond.wait_for([&] { return flag.get() == 1; }, 60s));
    }
    notifier->join();
    {
        std::unique_lock guard(cond);
        EXPECT_FALSE(cond.wait(10ms));
    }
    EXPECT_THROW(cond.notify(), mproc::UsageError);  // not held

    auto barrier = manager.Barrier(2);
    EXPECT_EQ(barrier.parties(), 2);
    int other_index = -1;
    std::thread party([barrier, &other_index] { other_index = barrier.wait(); });
    const int mine = barrier.wait();
    party.join();
    EXPECT_EQ(mine + other_index, 1);  // 0 and 1
    EXPECT_THROW(barrier.wait(20ms), mproc::BrokenBarrierError);
    EXPECT_TRUE(barrier.broken());
    barrier.reset();
    EXPECT_FALSE(barrier.broken());
}

void set_in_child(mproc::DictProxy<int, int> d, int key, int value) { d[key] = value; }

TEST(Manager, ChildrenUpdateADict) {
    auto manager = mproc::Manager();
    auto d = manager.dict<int, int>();
    std::vector<mproc::Process> jobs;
    for (int i = 0; i < 5; ++i) jobs.emplace_back(set_in_child, d, i, i * 2);
    for (auto& j : jobs) j.start();
    for (auto& j : jobs) j.join();
    for (auto& j : jobs) EXPECT_EQ(j.exitcode(), 0);
    EXPECT_EQ(d.size(), 5u);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(d.getitem(i), i * 2);
}

int add_to_list(mproc::ListProxy<int> l, int value) {
    l.append(value);
    return value;
}

TEST(Manager, ProxiesReachPoolWorkers) {
    auto manager = mproc::Manager();
    auto l = manager.list<int>();
    mproc::Pool pool({.processes = 2});
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 6; ++i) results.push_back(pool.apply_async(add_to_list, l, i));
    for (auto& r : results) r.get(10s);
    auto values = l.copy();
    std::sort(values.begin(), values.end());
    EXPECT_EQ(values, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

TEST(Manager, ProxyTravelsThroughAConnection) {
    auto manager = mproc::Manager();
    auto d = manager.dict<std::string, std::string>();
    auto [a, b] = mproc::Pipe();
    a.send(d);
    auto received = b.recv<mproc::DictProxy<std::string, std::string>>();
    received["k"] = "v";
    EXPECT_EQ(d.getitem("k"), "v");
    EXPECT_EQ(received.object_id(), d.object_id());
}

TEST(Manager, ReferentDiesWithItsLastProxy) {
    auto manager = mproc::Manager();
    EXPECT_EQ(manager.number_of_objects(), 0u);
    mproc::BaseProxy raw;
    {
        auto d = manager.dict<int, int>();
        raw = d;  // a second handle
        EXPECT_EQ(manager.number_of_objects(), 1u);
    }
    EXPECT_NO_THROW(raw.callmethod("__len__"));
    EXPECT_EQ(manager.number_of_objects(), 1u);
    raw = mproc::BaseProxy();
    EXPECT_EQ(manager.number_of_objects(), 0u);
    EXPECT_THROW(manager.create("no such type"), mproc::UsageError);
}

void use_then_exit(mproc::DictProxy<int, int> d) { d[1] = 1; }

TEST(Manager, ChildsReferenceIsReleasedAtItsExit) {
    auto manager = mproc::Manager();
    {
        auto d = manager.dict<int, int>();
        mproc::Process child(use_then_exit, d);
        child.start();
        child.join();
        ASSERT_EQ(child.exitcode(), 0);
        EXPECT_EQ(d.getitem(1), 1);
    }
    // With the parent's proxy and the child gone, nothing holds the dict.
    EXPECT_EQ(manager.number_of_objects(), 0u);
}

TEST(Manager, RegisteredTypeExposesOnlyItsMethods) {
    mproc::BaseManager manager;
    manager.register_type<Counter, int>("Counter")
        .method<&Counter::increment>("increment")
        .method<&Counter::get>("get")
        .method<&Counter::fail>("fail");
    manager.start();
    EXPECT_EQ(manager.process()->name().rfind("BaseManager-", 0), 0u);
    mproc::Proxy counter = manager.create("Counter", 5);
    EXPECT_EQ(counter.call<int>("increment", 2), 7);
    EXPECT_EQ(counter.call<int>("get"), 7);
    try {
        counter.call<int>("secret");
        FAIL() << "an unexposed method ran";
    } catch (const mproc::AttributeError& e) {
        EXPECT_STREQ(e.what(), "method 'secret' of 'Counter' object is not in exposed=('increment', 'get', 'fail')");
    }
    try {
        counter.call("fail");
        FAIL() << "no RemoteError";
    } catch (const mproc::RemoteError& e) {
        EXPECT_EQ(e.type_name(), "std::invalid_argument");
        EXPECT_EQ(e.message(), "counter refuses");
    }
    EXPECT_THROW(counter.call<int>("increment"), mproc::UsageError);  // wrong argument count
    manager.shutdown();
    EXPECT_THROW(counter.call<int>("get"), mproc::ManagerDiedError);
}

TEST(Manager, SharedRegisteredTypeIsOneObject) {
    mproc::BaseManager manager;
    manager.register_type<Counter>("shared_counter", {.shared = true}).method<&Counter::increment>("increment");
    manager.start();
    auto a = manager.create("shared_counter");
    auto b = manager.create("shared_counter");
    EXPECT_EQ(a.object_id(), b.object_id());
    a.call<int>("increment", 1);
    EXPECT_EQ(b.call<int>("increment", 1), 2);
}

TEST(Manager, ProxyReprNamesTheType) {
    auto manager = mproc::Manager();
    auto d = manager.dict<int, int>();
    EXPECT_EQ(d.repr().rfind("<DictProxy object, typeid 'dict' at 0x", 0), 0u) << d.repr();
    std::ostringstream os;
    d[1] = 2;
    os << d;
    EXPECT_EQ(os.str(), "{1: 2}");
}

TEST(Manager, UsageErrors) {
    mproc::SyncManager manager;
    EXPECT_THROW((manager.dict<int, int>()), mproc::UsageError);  // not started
    manager.start();
    EXPECT_THROW(manager.start(), mproc::UsageError);
    manager.shutdown();
    EXPECT_THROW((manager.dict<int, int>()), mproc::UsageError);
    mproc::BaseProxy empty;
    EXPECT_THROW(empty.callmethod("get"), mproc::UsageError);
    EXPECT_THROW(mproc::BaseManager().connect(), mproc::UsageError);  // no address
}

TEST(Manager, NoSocketLeftBehind) {
    std::string path;
    {
        auto manager = mproc::Manager();
        path = std::get<mproc::UnixAddress>(manager.address()).path;
        EXPECT_EQ(::access(path.c_str(), F_OK), 0);
    }
    EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

}  // namespace
