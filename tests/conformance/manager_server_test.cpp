// The manager's server as its clients see it, under every start method: clients that block in an
// object's method never hold up other clients (a registered type that declares concurrent(), the
// built-in referents), a registered type's calls are serialised otherwise; a manager restarted on
// the address of one that was shut down serves its first call; exceptions thrown by registered
// methods keep their kind across the wire. The port of a CPython test is named in a comment
// above it.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/thread_state.hpp"
#include "mproc/context.hpp"
#include "mproc/managers.hpp"
#include "mproc/pool.hpp"

using namespace std::chrono_literals;
using mproc::StartMethod;

// A user's own exception type, as a registered method may throw it.
struct Overdrawn : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// One named like an mproc error, and still the user's own.
struct KeyError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

namespace {

// How many gets wait inside BlockingQueue::get right now, in the server process: what the tests
// wait for before they put, so that the consumer is known to block first.
std::atomic<int> waiting_gets{0};

// A queue.Queue-like user type: get waits for an item (Empty after `timeout_ms`). Thread-safe
// itself, so it may be registered with concurrent().
class BlockingQueue {
public:
    void put(std::string item) {
        {
            std::lock_guard lock(mutex_);
            items_.push_back(std::move(item));
        }
        ready_.notify_one();
    }
    std::string get(std::int64_t timeout_ms) {
        std::unique_lock lock(mutex_);
        ++waiting_gets;
        const bool got = ready_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !items_.empty(); });
        --waiting_gets;
        if (!got) throw mproc::Empty();
        std::string item = std::move(items_.front());
        items_.pop_front();
        return item;
    }

private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::string> items_;
};

// Reads the server's waiting_gets: an object of its own, so that its calls never wait behind the
// queue's.
class Monitor {
public:
    int gets_waiting() const { return waiting_gets.load(); }
};

void register_queue(mproc::BaseManager& manager, bool concurrent) {
    auto queue = manager.register_type<BlockingQueue>("Q");
    if (concurrent) queue.concurrent();
    queue.method<&BlockingQueue::put>("put").method<&BlockingQueue::get>("get");
    manager.register_type<Monitor>("Monitor").method<&Monitor::gets_waiting>("gets_waiting");
}

void require(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
}

constexpr std::int64_t kLongWaitMs = 60'000;

// The consumer: a get that returns the producer's item well before its 60 s timeout.
void get_promptly(mproc::Proxy queue) {
    const auto start = std::chrono::steady_clock::now();
    require(queue.call<std::string>("get", kLongWaitMs) == "item", "the get returned another item");
    require(std::chrono::steady_clock::now() - start < 30s, "the get waited for its timeout");
}

// The consumer of a serialised queue: its get holds the object, so the put cannot reach the
// queue before the get's timeout ends it in Empty.
void get_until_empty(mproc::Proxy queue, std::int64_t timeout_ms) {
    try {
        queue.call<std::string>("get", timeout_ms);
    } catch (const mproc::Empty&) {
        return;
    }
    throw std::runtime_error("the get returned an item: the put ran during it");
}

void put_item(mproc::Proxy queue) { queue.call("put", std::string("item")); }

// Runs a call that waits (with a 60 s timeout) and must succeed well before its timeout.
template <class Call>
void succeeds_promptly(Call call) {
    const auto start = std::chrono::steady_clock::now();
    require(call(), "the call failed");
    require(std::chrono::steady_clock::now() - start < 30s, "the call waited for its timeout");
}

// The waiters on built-in objects set `ready`, then block in the call under test; the wakers run
// in another process.
void get_builtin(mproc::EventProxy ready, mproc::QueueProxy<std::string> queue) {
    ready.set();
    succeeds_promptly([&] { return queue.get(60s) == "item"; });
}
void put_builtin(mproc::QueueProxy<std::string> queue) { queue.put("item"); }

void wait_for_event(mproc::EventProxy ready, mproc::EventProxy event) {
    ready.set();
    succeeds_promptly([&] { return event.wait(60s); });
}
void set_event(mproc::EventProxy event) { event.set(); }

void wait_on_condition(mproc::EventProxy ready, mproc::ConditionProxy condition) {
    std::scoped_lock held(condition);
    ready.set();
    succeeds_promptly([&] { return condition.wait(60s); });
}
void notify_condition(mproc::ConditionProxy condition) {
    std::scoped_lock held(condition);  // waits until the waiter's wait let go of the lock
    condition.notify();
}

void acquire_lock(mproc::EventProxy ready, mproc::AcquirerProxy lock) {
    ready.set();
    succeeds_promptly([&] { return lock.acquire(60s); });
}
void release_lock(mproc::AcquirerProxy lock) { lock.release(); }

const auto kStartMethods = ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver);
std::string start_method_name(const ::testing::TestParamInfo<StartMethod>& info) {
    return std::string(mproc::to_string(info.param));
}

class ManagerServer : public ::testing::TestWithParam<StartMethod> {
protected:
    mproc::ManagerOptions options() const { return {.context = GetParam()}; }
    mproc::Process child_process(auto target, auto... args) const {
        return mproc::Process(mproc::ProcessOptions{.start_method = GetParam()}, target, args...);
    }
    static void expect_success(mproc::Process& child) {
        child.join(60s);
        ASSERT_FALSE(child.is_alive()) << "the child is still running after 60 s";
        EXPECT_EQ(child.exitcode(), 0);
    }
    // A child runs consume(queue, args...) on a "Q" (concurrent or not); once its get waits in the
    // server, another child puts "item". Both must succeed; then(queue) checks what is left.
    void consumer_then_producer(bool concurrent, auto consume, auto then, auto... args) const {
        mproc::BaseManager manager(options());
        register_queue(manager, concurrent);
        manager.start();
        auto queue = manager.create("Q");
        auto monitor = manager.create("Monitor");

        auto consumer = child_process(consume, queue, args...);
        consumer.start();
        ASSERT_TRUE(mproc::testing::eventually([&] { return monitor.call<int>("gets_waiting") == 1; }));
        auto producer = child_process(put_item, queue);
        producer.start();
        expect_success(producer);
        expect_success(consumer);
        EXPECT_EQ(monitor.call<int>("gets_waiting"), 0);
        then(queue);
    }
    // A child runs waiter(ready, object); once it sleeps in its call to the server (after it set
    // `ready`, its next sleep in a socket read is that call's), another child runs waker(object).
    // Both must succeed.
    void waiter_then_waker(mproc::EventProxy ready, auto waiter, auto waker, auto object) const {
        auto blocked = child_process(waiter, ready, object);
        blocked.start();
        ASSERT_TRUE(ready.wait(30s));
        ASSERT_TRUE(mproc::testing::wait_until_blocked(*blocked.pid(), mproc::testing::wchan::unix_socket_read));
        auto unblocking = child_process(waker, object);
        unblocking.start();
        expect_success(unblocking);
        expect_success(blocked);
    }
};

INSTANTIATE_TEST_SUITE_P(StartMethods, ManagerServer, kStartMethods, start_method_name);

// ---- concurrent clients ----------------------------------------------------------------------

TEST_P(ManagerServer, ConcurrentTypeLetsAPutThroughWhileAGetBlocks) {
    consumer_then_producer(true, get_promptly, [](const mproc::Proxy&) {});
}

// The default: calls on one object of a registered type run one at a time, so a get that blocks
// holds up the put until it ends (here in Empty, after its timeout); then the put goes through.
TEST_P(ManagerServer, SerialisedTypeHoldsAPutUntilTheGetEnds) {
    consumer_then_producer(
        false, get_until_empty,
        [](const mproc::Proxy& queue) { EXPECT_EQ(queue.call<std::string>("get", std::int64_t{0}), "item"); },
        std::int64_t{1500});
}

// The built-in objects' blocking calls sleep without holding the object: another client's call
// that ends the wait goes through.
TEST_P(ManagerServer, BuiltinQueueLetsAPutThroughWhileAGetBlocks) {
    auto manager = mproc::Manager(options());
    auto queue = manager.Queue<std::string>();
    waiter_then_waker(manager.Event(), get_builtin, put_builtin, queue);
    EXPECT_EQ(queue.qsize(), 0u);
}

TEST_P(ManagerServer, BuiltinEventLetsASetThroughWhileAWaitBlocks) {
    auto manager = mproc::Manager(options());
    waiter_then_waker(manager.Event(), wait_for_event, set_event, manager.Event());
}

TEST_P(ManagerServer, BuiltinConditionLetsANotifyThroughWhileAWaitBlocks) {
    auto manager = mproc::Manager(options());
    waiter_then_waker(manager.Event(), wait_on_condition, notify_condition, manager.Condition());
}

TEST_P(ManagerServer, BuiltinLockLetsAReleaseThroughWhileAnAcquireBlocks) {
    auto manager = mproc::Manager(options());
    auto lock = manager.Lock();
    ASSERT_TRUE(lock.acquire());
    waiter_then_waker(manager.Event(), acquire_lock, release_lock, lock);
}

constexpr int kClients = 4;
constexpr int kCallsEach = 200;

void fill_containers(mproc::ListProxy<int> list, mproc::DictProxy<int, int> dict, mproc::Namespace ns, int client) {
    for (int i = 0; i < kCallsEach; ++i) {
        list.append(i);
        dict[client * kCallsEach + i] = i;
        ns.set("client" + std::to_string(client), i);
    }
}

// Clients calling one list, dict and namespace at the same time lose nothing.
TEST_P(ManagerServer, BuiltinContainersTakeCallsFromManyClientsAtOnce) {
    auto manager = mproc::Manager(options());
    auto list = manager.list<int>();
    auto dict = manager.dict<int, int>();
    auto ns = manager.Namespace();
    std::vector<mproc::Process> clients;
    for (int client = 0; client < kClients; ++client) {
        clients.push_back(child_process(fill_containers, list, dict, ns, client));
        clients.back().start();
    }
    for (auto& client : clients) expect_success(client);
    EXPECT_EQ(list.size(), std::size_t{kClients * kCallsEach});
    EXPECT_EQ(list.count(kCallsEach - 1), std::size_t{kClients});
    EXPECT_EQ(dict.size(), std::size_t{kClients * kCallsEach});
    for (int client = 0; client < kClients; ++client)
        EXPECT_EQ(ns.get<int>("client" + std::to_string(client)), kCallsEach - 1);
}

// A client's threads each have a connection of their own: one blocked in a get does not hold up
// another's put on the same manager.
TEST_P(ManagerServer, ThreadsOfOneClientDoNotWaitForEachOther) {
    auto manager = mproc::Manager(options());
    auto queue = manager.Queue<std::string>();
    std::atomic<pid_t> getter{0};
    std::optional<std::string> got;
    std::thread consumer([&] {
        queue.qsize();  // connects: the next socket read this thread sleeps in is the get's
        getter = mproc::testing::this_thread_id();
        got = queue.get(60s);
    });
    ASSERT_TRUE(mproc::testing::eventually([&] { return getter.load() != 0; }));
    ASSERT_TRUE(mproc::testing::wait_until_blocked(getter.load(), mproc::testing::wchan::unix_socket_read));
    const auto start = std::chrono::steady_clock::now();
    queue.put("item");
    consumer.join();
    EXPECT_EQ(got, "item");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
}

class Counter {
public:
    int next() { return ++value_; }

private:
    int value_ = 0;
};

// A shared type created by many clients at once is still one object.
TEST_P(ManagerServer, SharedTypeCreatedByManyThreadsAtOnceIsOneObject) {
    mproc::BaseManager manager(options());
    manager.register_type<Counter>("counter", {.shared = true}).method<&Counter::next>("next");
    manager.start();
    std::vector<std::uint64_t> ids(4);
    std::vector<std::thread> threads;
    for (auto& id : ids) threads.emplace_back([&manager, &id] { id = manager.create("counter").object_id(); });
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(std::set<std::uint64_t>(ids.begin(), ids.end()).size(), 1u);
    EXPECT_EQ(manager.create("counter").call<int>("next"), 1);
}

// ---- restart on the same address -------------------------------------------------------------

// The first call on a manager started where another was shut down works, and a proxy of the old
// one never reaches the new server (whose objects have the same ids): it is ManagerDiedError.
TEST_P(ManagerServer, RestartOnTheSameAddressServesTheFirstCall) {
    const auto key = mproc::AuthKey::random();
    const std::string path =
        std::get<mproc::UnixAddress>(mproc::connection::arbitrary_address(mproc::Family::af_unix)).path;
    std::vector<mproc::Address> addresses = {mproc::UnixAddress(path), mproc::TcpAddress{"127.0.0.1", 0}};
    for (auto& address : addresses) {
        SCOPED_TRACE(mproc::connection::to_string(address));
        mproc::SyncManager first({.address = address, .authkey = key, .context = GetParam()});
        first.start();
        address = first.address();  // the port the kernel chose
        auto old = first.dict<int, int>();
        old[1] = 1;  // this thread now has a connection to the first server
        first.shutdown();

        mproc::SyncManager second({.address = address, .authkey = key, .context = GetParam()});
        second.start();
        ASSERT_EQ(mproc::connection::to_string(second.address()), mproc::connection::to_string(address));
        auto fresh = second.dict<int, int>();
        ASSERT_EQ(fresh.object_id(), old.object_id());
        fresh[1] = 2;
        EXPECT_EQ(fresh.getitem(1), 2);
        EXPECT_THROW(old.getitem(1), mproc::ManagerDiedError);
        EXPECT_EQ(fresh.getitem(1), 2);
        auto child = child_process([](mproc::DictProxy<int, int> d) { d[3] = 3; }, fresh);
        child.start();
        expect_success(child);
        EXPECT_EQ(fresh.getitem(3), 3);
    }
    ::unlink(path.c_str());
}

// CPython's QueueManager with get_queue: one blocking queue every client shares.
void register_shared_queue(mproc::BaseManager& manager) {
    manager.register_type<BlockingQueue>("get_queue", {.shared = true})
        .concurrent()
        .method<&BlockingQueue::put>("put")
        .method<&BlockingQueue::get>("get");
}

mproc::ManagerOptions tcp_options(std::optional<StartMethod> method, std::uint16_t port, const mproc::AuthKey& key) {
    return {.address = mproc::TcpAddress{"127.0.0.1", port}, .authkey = key, .context = method};
}

std::uint16_t port_of(const mproc::Address& address) { return std::get<mproc::TcpAddress>(address).port; }

// CPython's _putter: a client that registers nothing connects and puts.
void remote_putter(std::uint16_t port, std::vector<std::byte> key, std::string item) {
    mproc::BaseManager manager(tcp_options(std::nullopt, port, mproc::AuthKey(key)));
    manager.connect();
    manager.create("get_queue").call("put", item);
}

std::vector<std::byte> bytes_of(const mproc::AuthKey& key) { return {key.bytes().begin(), key.bytes().end()}; }

// CPython: _TestRemoteManager.test_remote (the getter blocks while the putter runs, as Python's
// queue.get() does; the xmlrpclib serializer has no equivalent)
TEST_P(ManagerServer, RemoteGetWaitsForARemotePutter) {
    const auto key = mproc::AuthKey::random(32);
    mproc::BaseManager manager(tcp_options(GetParam(), 0, key));
    register_shared_queue(manager);
    manager.start();
    const auto port = port_of(manager.address());

    auto putter = child_process(remote_putter, port, bytes_of(key), std::string("hello world"));
    putter.start();
    mproc::BaseManager client(tcp_options(GetParam(), port, key));
    client.connect();
    auto queue = client.create("get_queue");
    EXPECT_EQ(queue.call<std::string>("get", kLongWaitMs), "hello world");
    expect_success(putter);
}

// ---- exceptions keep their kind ----------------------------------------------------------------

// Throws what `kind` names, with `message`.
class Thrower {
public:
    void raise(std::string kind, std::string message) {
        if (kind == "ProcessError") throw mproc::ProcessError(message);
        if (kind == "UsageError") throw mproc::UsageError(message);
        if (kind == "DecodeError") throw mproc::DecodeError(message);
        if (kind == "TimeoutError") throw mproc::TimeoutError(message);
        if (kind == "EOFError") throw mproc::EOFError(message);
        if (kind == "ProtocolError") throw mproc::ProtocolError(message);
        if (kind == "AuthenticationError") throw mproc::AuthenticationError(message);
        if (kind == "BrokenBarrierError") throw mproc::BrokenBarrierError(message);
        if (kind == "KeyError") throw mproc::KeyError(message);
        if (kind == "IndexError") throw mproc::IndexError(message);
        if (kind == "ValueError") throw mproc::ValueError(message);
        if (kind == "AttributeError") throw mproc::AttributeError(message);
        if (kind == "Empty") throw mproc::Empty(message);
        if (kind == "Full") throw mproc::Full(message);
        if (kind == "ManagerDiedError") throw mproc::ManagerDiedError(message);
        if (kind == "OSError") throw mproc::OSError(message, ENOENT);
        if (kind == "OSError without errno") throw mproc::OSError(message);
        if (kind == "RemoteError") throw mproc::RemoteError("ZeroDivisionError", message);
        if (kind == "TaskError") throw mproc::TaskError("ZeroDivisionError", message);
        if (kind == "runtime_error") throw std::runtime_error(message);
        if (kind == "Overdrawn") throw Overdrawn(message);
        if (kind == "user KeyError") throw ::KeyError(message);
        if (kind == "int") throw 42;
    }
    int alive() const { return 1; }
};

void register_thrower(mproc::BaseManager& manager, bool concurrent) {
    auto thrower = manager.register_type<Thrower>("Thrower");
    if (concurrent) thrower.concurrent();
    thrower.method<&Thrower::raise>("raise").method<&Thrower::alive>("alive");
}

template <class E>
void expect_arrives_as(const mproc::Proxy& thrower, const std::string& kind) {
    SCOPED_TRACE(kind);
    const std::string message = "the " + kind + " of a registered method";
    try {
        thrower.call("raise", kind, message);
        ADD_FAILURE() << "nothing thrown";
    } catch (const E& e) {
        EXPECT_EQ(typeid(e), typeid(E)) << "arrived as " << typeid(e).name();
        EXPECT_EQ(std::string(e.what()), message);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "arrived as " << typeid(e).name() << ": " << e.what();
    }
    EXPECT_EQ(thrower.call<int>("alive"), 1) << "the server did not go on";
}

// The RemoteError that thrower.raise(kind, message) throws: other exception types than mproc's.
mproc::RemoteError remote_error_of(const mproc::Proxy& thrower, const std::string& kind, const std::string& message) {
    SCOPED_TRACE(kind);
    std::optional<mproc::RemoteError> error;
    try {
        thrower.call("raise", kind, message);
    } catch (const mproc::RemoteError& e) {
        EXPECT_EQ(typeid(e), typeid(mproc::RemoteError)) << "arrived as " << typeid(e).name();
        error = e;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "arrived as " << typeid(e).name() << ": " << e.what();
    }
    EXPECT_EQ(thrower.call<int>("alive"), 1) << "the server did not go on";
    return error.value_or(mproc::RemoteError("nothing thrown", ""));
}

void expect_kinds_kept(const mproc::Proxy& thrower) {
    expect_arrives_as<mproc::ProcessError>(thrower, "ProcessError");
    expect_arrives_as<mproc::UsageError>(thrower, "UsageError");
    expect_arrives_as<mproc::DecodeError>(thrower, "DecodeError");
    expect_arrives_as<mproc::TimeoutError>(thrower, "TimeoutError");
    expect_arrives_as<mproc::EOFError>(thrower, "EOFError");
    expect_arrives_as<mproc::ProtocolError>(thrower, "ProtocolError");
    expect_arrives_as<mproc::AuthenticationError>(thrower, "AuthenticationError");
    expect_arrives_as<mproc::BrokenBarrierError>(thrower, "BrokenBarrierError");
    expect_arrives_as<mproc::KeyError>(thrower, "KeyError");
    expect_arrives_as<mproc::IndexError>(thrower, "IndexError");
    expect_arrives_as<mproc::ValueError>(thrower, "ValueError");
    expect_arrives_as<mproc::AttributeError>(thrower, "AttributeError");
    expect_arrives_as<mproc::Empty>(thrower, "Empty");
    expect_arrives_as<mproc::Full>(thrower, "Full");
    expect_arrives_as<mproc::ManagerDiedError>(thrower, "ManagerDiedError");
    expect_arrives_as<mproc::OSError>(thrower, "OSError without errno");
}

TEST_P(ManagerServer, MprocExceptionsOfARegisteredMethodKeepTheirKind) {
    mproc::BaseManager manager(options());
    register_thrower(manager, false);
    manager.start();
    expect_kinds_kept(manager.create("Thrower"));
}

TEST_P(ManagerServer, ConcurrentMethodsKeepTheKindsToo) {
    mproc::BaseManager manager(options());
    register_thrower(manager, true);
    manager.start();
    expect_kinds_kept(manager.create("Thrower"));
}

TEST_P(ManagerServer, OSErrorKeepsItsErrno) {
    mproc::BaseManager manager(options());
    register_thrower(manager, false);
    manager.start();
    auto thrower = manager.create("Thrower");
    const mproc::OSError local("open", ENOENT);
    try {
        thrower.call("raise", std::string("OSError"), std::string("open"));
        ADD_FAILURE() << "nothing thrown";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(std::string(e.what()), local.what());
        EXPECT_EQ(e.code().value(), ENOENT);
    }
    try {
        thrower.call("raise", std::string("OSError without errno"), std::string("handle is closed"));
        ADD_FAILURE() << "nothing thrown";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(std::string(e.what()), "handle is closed");
        EXPECT_EQ(e.code().value(), 0);
    }
}

TEST_P(ManagerServer, OtherExceptionsArriveAsRemoteErrorWithTheirTypeName) {
    mproc::BaseManager manager(options());
    register_thrower(manager, false);
    manager.start();
    auto thrower = manager.create("Thrower");

    auto error = remote_error_of(thrower, "runtime_error", "out of cheese");
    EXPECT_EQ(error.type_name(), "std::runtime_error");
    EXPECT_EQ(error.message(), "out of cheese");
    EXPECT_EQ(std::string(error.what()), "std::runtime_error: out of cheese");

    error = remote_error_of(thrower, "Overdrawn", "balance -5");
    EXPECT_EQ(error.type_name(), "Overdrawn");
    EXPECT_EQ(error.message(), "balance -5");

    // A user type named like an mproc error is still the user's: a RemoteError.
    error = remote_error_of(thrower, "user KeyError", "'k'");
    EXPECT_EQ(error.type_name(), "KeyError");
    EXPECT_EQ(error.message(), "'k'");

    // Not even a std::exception.
    error = remote_error_of(thrower, "int", "ignored");
    EXPECT_EQ(error.type_name(), "int");

    // A RemoteError the method let through (from another manager's object) keeps its type name;
    // a TaskError (a Pool task's exception) arrives as the RemoteError it is.
    error = remote_error_of(thrower, "RemoteError", "division by zero");
    EXPECT_EQ(error.type_name(), "ZeroDivisionError");
    EXPECT_EQ(error.message(), "division by zero");
    error = remote_error_of(thrower, "TaskError", "division by zero");
    EXPECT_EQ(error.type_name(), "ZeroDivisionError");

    auto server = *manager.process();
    EXPECT_TRUE(server.is_alive());
}

}  // namespace
