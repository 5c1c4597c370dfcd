// Connections, Listener and Client as CPython's own tests use them (Lib/test/_test_multiprocessing.py:
// _TestConnection, _TestListener, _TestListenerClient, _TestPoll), once per start method where a
// child takes part. Each test names the CPython test it ports. Also: addresses and authkeys are
// Encodable, so a child under any start method can connect back to its parent's listener.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/authkey.hpp"
#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/context.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/synchronize.hpp"

using namespace std::chrono_literals;
using mproc::Connection;
using mproc::StartMethod;

namespace {

class ConnectionConformance : public mproc::testing::PerStartMethodTest {
protected:
    ConnectionConformance() : PerStartMethodTest("a connection conformance test") {}
};

class ConnectionPython : public mproc::testing::LeakCheckedTest {
protected:
    ConnectionPython() : LeakCheckedTest("a connection test", false) {}
};

std::string text(std::span<const std::byte> data) { return {reinterpret_cast<const char*>(data.data()), data.size()}; }

// Python's OSError with its text, no errno.
template <class F>
void expect_python_os_error(F f, const char* message) {
    try {
        f();
        ADD_FAILURE() << "expected OSError: " << message;
    } catch (const mproc::OSError& e) {
        EXPECT_STREQ(e.what(), message);
        EXPECT_FALSE(e.code()) << "no errno, as Python's";
    }
}

// CPython's _echo: returns every message until an empty one.
void echo(Connection& conn) {
    for (;;) {
        const std::vector<std::byte> message = conn.recv_bytes();
        if (message.empty()) break;
        conn.send_bytes(message);
    }
    conn.close();
}

// CPython's _TestListenerClient._test, with the authkey a listener may want.
void send_hello(mproc::Address address, std::optional<mproc::AuthKey> key) {
    Connection conn = mproc::Client(address, {.authkey = key});
    conn.send(std::string("hello"));
    conn.close();
}

void send_hello_then_report(mproc::Address address, mproc::Event done) {
    send_hello(std::move(address), std::nullopt);
    done.set();
}

void send_strings(Connection& conn, std::vector<std::string> strings) {
    for (const auto& s : strings) conn.send_bytes(s);
    conn.close();
}

void poll_only(Connection& reader, mproc::Event polling) {
    polling.set();
    reader.poll(20s);  // may pull a message in; it must not pull half of one
}

void send_three(Connection& conn) {
    conn.send_bytes("a");
    conn.send_bytes("b");
    conn.send_bytes("cd");
}

// A second descriptor for the same end, to give a child while the test keeps its own.
Connection duplicate(const Connection& conn) {
    return Connection::from_fd(::dup(conn.fileno()), conn.readable(), conn.writable());
}

const std::string kSentinel;

}  // namespace

INSTANTIATE_TEST_SUITE_P(StartMethods, ConnectionConformance,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         mproc::testing::start_method_name);

// ---- _TestConnection ----

// CPython: _TestConnection.test_connection
TEST_P(ConnectionConformance, EchoChildReturnsEveryKindOfMessage) {
    auto [conn, child_conn] = mproc::Pipe();
    {
        mproc::Process p(echo, std::move(child_conn));
        p.start();
        EXPECT_GE(conn.fileno(), 0);

        const std::vector<double> seq{1, 2.25};
        conn.send(seq);
        EXPECT_EQ(conn.recv<std::vector<double>>(), seq);

        const std::string msg = "hello world";
        conn.send_bytes(msg);
        EXPECT_EQ(text(conn.recv_bytes()), msg);

        const std::vector<int> arr{0, 1, 2, 3};
        std::vector<int> buffer(10, 0);
        conn.send_bytes(arr);
        EXPECT_EQ(conn.recv_bytes_into(buffer), arr.size() * sizeof(int));
        EXPECT_EQ(buffer, (std::vector<int>{0, 1, 2, 3, 0, 0, 0, 0, 0, 0}));

        buffer.assign(10, 0);
        conn.send_bytes(arr);
        EXPECT_EQ(conn.recv_bytes_into(buffer, 3 * sizeof(int)), arr.size() * sizeof(int));
        EXPECT_EQ(buffer, (std::vector<int>{0, 0, 0, 0, 1, 2, 3, 0, 0, 0}));

        std::string longmsg;
        for (int i = 0; i < 10; ++i) longmsg += msg;
        std::vector<char> small(40, ' ');
        conn.send_bytes(longmsg);
        try {
            conn.recv_bytes_into(small);
            ADD_FAILURE() << "expected BufferTooShort";
        } catch (const mproc::BufferTooShort& e) {
            EXPECT_EQ(text(e.message()), longmsg);
        }

        EXPECT_FALSE(conn.poll());
        EXPECT_FALSE(conn.poll(-1s));  // a negative timeout is zero
        const auto start = std::chrono::steady_clock::now();
        EXPECT_FALSE(conn.poll(100ms));
        EXPECT_GE(std::chrono::steady_clock::now() - start, 95ms);

        conn.send(std::optional<int>());  // Python's None (one byte: an empty message ends the echo)
        EXPECT_TRUE(conn.poll(20s));
        EXPECT_EQ(conn.recv<std::optional<int>>(), std::nullopt);

        const std::string really_big(16 << 20, 'X');
        conn.send_bytes(really_big);
        EXPECT_TRUE(text(conn.recv_bytes()) == really_big);

        conn.send_bytes(kSentinel);  // tells the child to quit
        child_conn.close();
        EXPECT_EQ(joined(p), 0);
    }  // the Process object's copy of the child's end goes with it
    EXPECT_TRUE(conn.readable());
    EXPECT_TRUE(conn.writable());
    EXPECT_THROW(conn.recv<int>(), mproc::EOFError);
    EXPECT_THROW(conn.recv_bytes(), mproc::EOFError);
}

// CPython: _TestConnection.test_duplex_false
TEST_F(ConnectionPython, SimplexEndsRefuseTheWrongDirectionWithOSError) {
    auto [reader, writer] = mproc::Pipe(false);
    writer.send(1);
    EXPECT_EQ(reader.recv<int>(), 1);
    EXPECT_TRUE(reader.readable());
    EXPECT_FALSE(reader.writable());
    EXPECT_FALSE(writer.readable());
    EXPECT_TRUE(writer.writable());
    expect_python_os_error([&] { reader.send(2); }, "connection is read-only");
    expect_python_os_error([&] { writer.recv<int>(); }, "connection is write-only");
    expect_python_os_error([&] { writer.poll(); }, "connection is write-only");
}

// CPython: _TestConnection.test_spawn_close
TEST_P(ConnectionConformance, ParentClosesTheChildsEndRightAfterStart) {
    auto [conn, child_conn] = mproc::Pipe();
    mproc::Process p(echo, std::move(child_conn));
    p.start();
    child_conn.close();  // may happen before the child is up
    conn.send_bytes("hello");
    EXPECT_EQ(text(conn.recv_bytes()), "hello");
    conn.send_bytes(kSentinel);
    conn.close();
    EXPECT_EQ(joined(p), 0);
}

// CPython: _TestConnection.test_sendbytes (Python's negative offsets and sizes cannot be written
// with std::size_t)
TEST_F(ConnectionPython, SendBytesOffsetsAndSizes) {
    const std::string msg = "abcdefghijklmnopqrstuvwxyz";
    auto [a, b] = mproc::Pipe();
    a.send_bytes(msg);
    EXPECT_EQ(text(b.recv_bytes()), msg);
    a.send_bytes(msg, 5);
    EXPECT_EQ(text(b.recv_bytes()), msg.substr(5));
    a.send_bytes(msg, 7, 8);
    EXPECT_EQ(text(b.recv_bytes()), msg.substr(7, 8));
    a.send_bytes(msg, 26);
    EXPECT_EQ(text(b.recv_bytes()), "");
    a.send_bytes(msg, 26, 0);
    EXPECT_EQ(text(b.recv_bytes()), "");
    EXPECT_THROW(a.send_bytes(msg, 27), mproc::UsageError);     // Python: ValueError
    EXPECT_THROW(a.send_bytes(msg, 22, 5), mproc::UsageError);
    EXPECT_THROW(a.send_bytes(msg, 26, 1), mproc::UsageError);
    EXPECT_FALSE(b.poll()) << "a refused send_bytes sent something";
}

// CPython: _TestConnection.test_context
TEST_F(ConnectionPython, AClosedEndRaisesOSError) {
    auto [a, b] = mproc::Pipe();
    a.send(1729);
    EXPECT_EQ(b.recv<int>(), 1729);
    EXPECT_FALSE(a.closed());
    EXPECT_FALSE(b.closed());
    a.close();  // what leaving Python's `with a, b:` does (here: the destructor, or close())
    b.close();
    EXPECT_TRUE(a.closed());
    EXPECT_TRUE(b.closed());
    expect_python_os_error([&] { a.recv<int>(); }, "handle is closed");
    expect_python_os_error([&] { b.recv<int>(); }, "handle is closed");
    expect_python_os_error([&] { b.send_bytes("x"); }, "handle is closed");
    expect_python_os_error([&] { b.fileno(); }, "handle is closed");
}

// ---- _TestListener ----

// CPython: _TestListener.test_multiple_bind
TEST_F(ConnectionPython, BindingAnAddressInUseIsOSError) {
    for (const mproc::Family family : mproc::connection::families) {
        mproc::Listener l({.family = family, .authkey = mproc::AuthKey("k")});
        try {
            mproc::Listener again({.address = l.address(), .family = family, .authkey = mproc::AuthKey("k")});
            ADD_FAILURE() << "bound " << mproc::connection::to_string(l.address()) << " twice";
        } catch (const mproc::OSError& e) {
            EXPECT_EQ(e.code(), std::errc::address_in_use) << e.what();
        }
    }
}

// CPython: _TestListener.test_context
TEST_F(ConnectionPython, ListenerScopeAndAcceptOnAClosedListener) {
    mproc::Listener l;
    {
        Connection c = mproc::Client(l.address());
        Connection d = l.accept();
        c.send(1729);
        EXPECT_EQ(d.recv<int>(), 1729);
    }
    l.close();
    expect_python_os_error([&] { l.accept(); }, "listener is closed");
    expect_python_os_error([&] { l.accept(10ms); }, "listener is closed");
    mproc::Listener moved_from(std::move(l));
    moved_from.close();
    expect_python_os_error([&] { l.accept(); }, "listener is closed");
}

// CPython: _TestListener.test_empty_authkey
TEST_F(ConnectionPython, EmptyAuthkeyAuthenticates) {
    const mproc::AuthKey key("");
    mproc::Listener listener({.authkey = key});
    auto client = std::async(std::launch::async, [address = listener.address(), key] {
        mproc::Client(address, {.authkey = key}).send(1729);
    });
    {
        Connection d = listener.accept();
        EXPECT_EQ(d.recv<int>(), 1729);
    }
    client.get();
    listener.close();
    EXPECT_THROW(listener.accept(), mproc::OSError);
}

// CPython: _TestListener.test_abstract_socket
TEST_F(ConnectionPython, AbstractSocket) {
    const std::string name = std::string(1, '\0') + "mproc-test-abstract-" + std::to_string(::getpid());
    mproc::Listener listener({.address = mproc::UnixAddress(name), .allow_abstract_namespace = true});
    {
        Connection client = mproc::Client(listener.address());
        Connection d = listener.accept();
        client.send(1729);
        EXPECT_EQ(d.recv<int>(), 1729);
    }
    listener.close();
    EXPECT_THROW(listener.accept(), mproc::OSError);
}

// ---- _TestListenerClient ----

// CPython: _TestListenerClient.test_listener_client; the address, and the authkey when there is
// one, are arguments of the child under every start method (Encodable, as Python pickles them).
TEST_P(ConnectionConformance, ChildConnectsAClientToTheParentsListener) {
    const mproc::AuthKey key = mproc::AuthKey::random();
    struct Case {
        mproc::Family family;
        std::optional<mproc::AuthKey> authkey;
    };
    for (const Case& c : {Case{mproc::Family::af_unix, std::nullopt}, Case{mproc::Family::af_unix, key},
                          Case{mproc::Family::af_inet, std::nullopt}, Case{mproc::Family::af_inet, key}}) {
        mproc::Listener l({.family = c.family, .authkey = c.authkey, .allow_unauthenticated_tcp = true});
        mproc::Process p(send_hello, l.address(), c.authkey);
        p.start();
        Connection conn = l.accept();
        EXPECT_EQ(conn.recv<std::string>(), "hello") << mproc::connection::to_string(l.address());
        EXPECT_EQ(joined(p), 0);
        l.close();
    }
}

// CPython: _TestListenerClient.test_issue14725: a client that connected, sent and left before
// accept() is still accepted, with its message (Python sleeps a second; this waits for the child
// to say it is done).
TEST_P(ConnectionConformance, AClientThatLeftBeforeAcceptIsStillAccepted) {
    mproc::Listener l;
    mproc::Event done;
    mproc::Process p(send_hello_then_report, l.address(), done);
    p.start();
    ASSERT_TRUE(done.wait(30s));
    Connection conn = l.accept();
    EXPECT_EQ(conn.recv<std::string>(), "hello");
    conn.close();
    EXPECT_EQ(joined(p), 0);
    l.close();
}

// CPython: _TestListenerClient.test_issue16955
TEST_F(ConnectionPython, PollSeesWhatTheAcceptedEndSent) {
    for (const mproc::Family family : mproc::connection::families) {
        mproc::Listener l({.family = family, .allow_unauthenticated_tcp = true});
        Connection c = mproc::Client(l.address());
        Connection a = l.accept();
        a.send_bytes("hello");
        EXPECT_TRUE(c.poll(20s));
        a.close();
        c.close();
        l.close();
    }
}

// Address and AuthKey encode and decode to equal values (what crosses to a spawn child).
TEST_F(ConnectionPython, AddressesAndAuthkeysAreEncodable) {
    const mproc::Address unix_address = mproc::UnixAddress("/tmp/mproc-x/listener-y");
    const mproc::Address tcp_address = mproc::TcpAddress{"10.1.2.3", 6000};
    EXPECT_EQ(mproc::loads<mproc::Address>(mproc::dumps(unix_address)), unix_address);
    EXPECT_EQ(mproc::loads<mproc::Address>(mproc::dumps(tcp_address)), tcp_address);
    EXPECT_EQ(mproc::loads<mproc::TcpAddress>(mproc::dumps(mproc::TcpAddress{"", 1})), (mproc::TcpAddress{"", 1}));
    const mproc::AuthKey key = mproc::AuthKey::random(40);
    EXPECT_TRUE(mproc::loads<mproc::AuthKey>(mproc::dumps(key)) == key);
    EXPECT_TRUE(mproc::loads<mproc::AuthKey>(mproc::dumps(mproc::AuthKey(""))).empty());
}

// ---- _TestPoll ----

// CPython: _TestPoll.test_empty_string
TEST_F(ConnectionPython, PollSeesAnEmptyMessage) {
    auto [a, b] = mproc::Pipe();
    EXPECT_FALSE(a.poll());
    b.send_bytes("");
    EXPECT_TRUE(a.poll());
    EXPECT_TRUE(a.poll());  // polling does not consume it
    EXPECT_EQ(a.recv_bytes().size(), 0U);
}

// CPython: _TestPoll.test_strings (the child does not sleep between messages: poll must find
// each message whatever the timing)
TEST_P(ConnectionConformance, PollFindsEachMessageInTurn) {
    const std::vector<std::string> strings{"hello", "", "a", "b", "", "bye", "", "lop"};
    auto [a, b] = mproc::Pipe();
    mproc::Process p(send_strings, std::move(b), strings);
    p.start();
    for (const auto& s : strings) {
        EXPECT_TRUE(a.poll(20s));
        EXPECT_EQ(text(a.recv_bytes()), s);
    }
    EXPECT_EQ(joined(p), 0);
}

// CPython: _TestPoll.test_boundaries: a poll in another process never pulls in part of a message,
// which would corrupt the pipe for the others (Python sleeps 2 s; this waits for the child to poll).
TEST_P(ConnectionConformance, PollInAnotherProcessLeavesMessagesWhole) {
    auto [r, w] = mproc::Pipe(false);
    mproc::Event polling;
    mproc::Process p(poll_only, duplicate(r), polling);
    p.start();
    ASSERT_TRUE(polling.wait(30s));
    w.send_bytes("first");
    w.send_bytes("second");
    w.close();
    EXPECT_EQ(joined(p), 0);
    EXPECT_EQ(text(r.recv_bytes()), "first");
    EXPECT_EQ(text(r.recv_bytes()), "second");
}

// CPython: _TestPoll.test_dont_merge
TEST_P(ConnectionConformance, PollDoesNotMergeMessages) {
    auto [a, b] = mproc::Pipe();
    EXPECT_FALSE(a.poll(0s));
    EXPECT_FALSE(a.poll(100ms));
    mproc::Process p(send_three, duplicate(b));
    p.start();
    EXPECT_EQ(text(a.recv_bytes()), "a");
    EXPECT_TRUE(a.poll(20s));
    EXPECT_TRUE(a.poll(20s));
    EXPECT_EQ(text(a.recv_bytes()), "b");
    EXPECT_TRUE(a.poll(20s));
    EXPECT_TRUE(a.poll(20s));
    EXPECT_TRUE(a.poll(0s));
    EXPECT_EQ(text(a.recv_bytes()), "cd");
    EXPECT_EQ(joined(p), 0);
}
