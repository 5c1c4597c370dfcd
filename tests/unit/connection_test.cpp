// Pipe, Connection, connection::wait, Listener and Client: the behaviour of the API, with peers
// that behave. Hostile peers are in tests/faults/connection_faults_test.cpp; Python peers in
// tests/interop/.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/connection.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "transport/frame.hpp"
#include "transport/handshake.hpp"

using namespace std::chrono_literals;
using mproc::Connection;

namespace {

std::vector<std::byte> bytes(std::string_view text) {
    const auto view = std::as_bytes(std::span(text.data(), text.size()));
    return {view.begin(), view.end()};
}

std::string text(std::span<const std::byte> data) {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
}

void write_raw(int fd, std::span<const std::byte> data) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        ASSERT_GT(n, 0) << std::strerror(errno);
        data = data.subspan(static_cast<std::size_t>(n));
    }
}

struct Order {
    std::string item;
    int quantity = 0;
    std::optional<double> limit;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(item, quantity, limit);
    }
    friend bool operator==(const Order&, const Order&) = default;
};

mproc::AuthKey key(std::string_view text) { return mproc::AuthKey(text); }

// Client() waits for the listener's challenge, which the listener sends from inside accept():
// with both in one test, the client runs on a thread of its own.
std::future<Connection> client_async(mproc::Address address, mproc::ClientOptions options = {}) {
    return std::async(std::launch::async, [address = std::move(address), options = std::move(options)] {
        return mproc::Client(address, options);
    });
}

}  // namespace

// ---- Pipe and Connection ----

TEST(Pipe, DuplexEndsSendAndReceiveTypedValuesBothWays) {
    auto [a, b] = mproc::Pipe();
    EXPECT_TRUE(a.readable() && a.writable() && b.readable() && b.writable());
    a.send(42);
    a.send(std::string("hello"));
    a.send(std::map<std::string, std::vector<int>>{{"x", {1, 2}}, {"y", {}}});
    a.send(Order{"apple", 3, 1.5});
    EXPECT_EQ(b.recv<int>(), 42);
    EXPECT_EQ(b.recv<std::string>(), "hello");
    EXPECT_EQ((b.recv<std::map<std::string, std::vector<int>>>()),
              (std::map<std::string, std::vector<int>>{{"x", {1, 2}}, {"y", {}}}));
    EXPECT_EQ(b.recv<Order>(), (Order{"apple", 3, 1.5}));
    b.send(std::vector<double>{0.5, 0.25});
    EXPECT_EQ(a.recv<std::vector<double>>(), (std::vector<double>{0.5, 0.25}));
}

TEST(Pipe, SimplexGivesAReaderAndAWriter) {
    auto [reader, writer] = mproc::Pipe(false);
    EXPECT_TRUE(reader.readable());
    EXPECT_FALSE(reader.writable());
    EXPECT_FALSE(writer.readable());
    EXPECT_TRUE(writer.writable());
    writer.send_bytes("over a pipe");
    EXPECT_EQ(text(reader.recv_bytes()), "over a pipe");
    // Python: OSError, with these texts.
    try {
        writer.recv_bytes();
        FAIL() << "recv on the write end";
    } catch (const mproc::OSError& e) {
        EXPECT_STREQ(e.what(), "connection is write-only");
        EXPECT_FALSE(e.code());
    }
    try {
        reader.send(1);
        FAIL() << "send on the read end";
    } catch (const mproc::OSError& e) {
        EXPECT_STREQ(e.what(), "connection is read-only");
    }
}

TEST(Connection, SendBytesTakesOffsetAndSizeLikePython) {
    auto [a, b] = mproc::Pipe();
    const std::vector<std::byte> data = bytes("0123456789");
    a.send_bytes(data, 2, 3);
    a.send_bytes(data, 7);
    a.send_bytes(std::string("string"));
    a.send_bytes(std::vector<char>{'v', 'e', 'c'});
    a.send_bytes(std::array<std::uint16_t, 2>{0x4241, 0x4443});  // bytes of any trivially copyable range
    a.send_bytes("");
    EXPECT_EQ(text(b.recv_bytes()), "234");
    EXPECT_EQ(text(b.recv_bytes()), "789");
    EXPECT_EQ(text(b.recv_bytes()), "string");
    EXPECT_EQ(text(b.recv_bytes()), "vec");
    EXPECT_EQ(text(b.recv_bytes()), "ABCD");
    EXPECT_TRUE(b.recv_bytes().empty());
    EXPECT_THROW(a.send_bytes(data, 11), mproc::UsageError);
    try {
        a.send_bytes(data, 8, 3);
        FAIL();
    } catch (const mproc::UsageError& e) {
        EXPECT_STREQ(e.what(), "buffer length < offset + size");
    }
    EXPECT_FALSE(b.poll()) << "a refused send_bytes must send nothing";
}

TEST(Connection, RecvBytesMaxlengthRefusesALongerMessageAndClosesLikePython) {
    auto [a, b] = mproc::Pipe();
    a.send_bytes("12345");
    EXPECT_EQ(text(b.recv_bytes(5)), "12345");
    a.send_bytes("123456");
    try {
        b.recv_bytes(5);
        FAIL() << "a 6-byte message passed maxlength 5";
    } catch (const mproc::ProtocolError& e) {
        EXPECT_NE(std::string(e.what()).find("bad message length"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(b.closed());
}

TEST(Connection, RecvBytesIntoFillsFromTheOffset) {
    auto [a, b] = mproc::Pipe();
    std::array<std::byte, 8> buffer{};
    a.send_bytes("abc");
    EXPECT_EQ(b.recv_bytes_into(buffer, 2), 3u);
    EXPECT_EQ(text(std::span(buffer).subspan(2, 3)), "abc");
    EXPECT_EQ(buffer[0], std::byte{0});
    std::string as_string(4, '.');
    a.send_bytes("wxyz");
    EXPECT_EQ(b.recv_bytes_into(as_string), 4u);
    EXPECT_EQ(as_string, "wxyz");
    try {
        b.recv_bytes_into(buffer, 9);
        FAIL();
    } catch (const mproc::UsageError& e) {
        EXPECT_STREQ(e.what(), "offset too large");
    }
}

TEST(Connection, BufferTooShortCarriesTheWholeMessageAndTheConnectionGoesOn) {
    auto [a, b] = mproc::Pipe();
    std::array<std::byte, 4> buffer{};
    a.send_bytes("a message longer than four bytes");
    a.send_bytes("next");
    try {
        b.recv_bytes_into(buffer, 1);
        FAIL() << "no BufferTooShort";
    } catch (const mproc::BufferTooShort& e) {
        EXPECT_EQ(text(e.message()), "a message longer than four bytes");
        const mproc::BufferTooShort copy = e;  // the copy shares the message
        EXPECT_EQ(copy.message().data(), e.message().data());
    }
    EXPECT_FALSE(b.closed());
    EXPECT_EQ(b.recv_bytes_into(buffer), 4u);
    EXPECT_EQ(text(buffer), "next");
}

TEST(Connection, PollSaysWhetherAMessageIsWaitingAndHonoursItsTimeout) {
    auto [a, b] = mproc::Pipe();
    EXPECT_FALSE(b.poll());
    auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(b.poll(50ms));
    EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
    EXPECT_FALSE(b.poll(std::chrono::duration<double>(0.01)));
    // Sent only once poll(std::nullopt) is blocked: it waits as long as it takes.
    std::atomic<bool> sent{false};
    std::thread sender = mproc::testing::act_once_blocked(mproc::testing::this_thread_id(), mproc::testing::wchan::poll,
                                                          [&a, &sent] {
                                                              sent = true;
                                                              a.send(7);
                                                          });
    EXPECT_TRUE(b.poll(std::nullopt));
    EXPECT_TRUE(sent) << "poll returned before the message was sent";
    sender.join();
    EXPECT_TRUE(b.poll());
    EXPECT_TRUE(b.poll(std::chrono::hours::max())) << "an enormous timeout must not overflow";
    EXPECT_EQ(b.recv<int>(), 7);
    EXPECT_FALSE(b.poll(-5s)) << "a negative timeout is zero";
}

TEST(Connection, PeerCloseIsEndOfFileOnRecvAndBrokenPipeOnSend) {
    auto [a, b] = mproc::Pipe();
    a.send(1);
    a.close();
    EXPECT_TRUE(b.poll()) << "end of file makes a connection ready, as in Python";
    EXPECT_EQ(b.recv<int>(), 1) << "what was sent before the close is still delivered";
    EXPECT_THROW(b.recv<int>(), mproc::EOFError);
    EXPECT_THROW(b.recv_bytes(), mproc::EOFError);
    EXPECT_FALSE(b.closed()) << "a clean end of file leaves the connection open, as in Python";
    try {
        b.send_bytes("anyone there?");
        FAIL() << "no error writing to a closed peer";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::broken_pipe) << e.what();
    }
}

TEST(Connection, ClosedConnectionRefusesUseWithPythonsMessage) {
    auto [a, b] = mproc::Pipe();
    a.close();
    a.close();  // idempotent
    EXPECT_TRUE(a.closed());
    for (auto use : std::vector<std::function<void()>>{[&] { a.send(1); }, [&] { a.recv<int>(); },
                                                       [&] { a.fileno(); }, [&] { a.poll(); },
                                                       [&] { a.detach(); }}) {
        try {
            use();
            FAIL() << "a closed connection was usable";
        } catch (const mproc::OSError& e) {  // Python: OSError("handle is closed")
            EXPECT_STREQ(e.what(), "handle is closed");
            EXPECT_FALSE(e.code());
        }
    }
    Connection empty;
    EXPECT_TRUE(empty.closed());
}

TEST(Connection, MovingTransfersTheDescriptor) {
    auto [a, b] = mproc::Pipe();
    const int fd = a.fileno();
    Connection moved = std::move(a);
    EXPECT_TRUE(a.closed());
    EXPECT_EQ(moved.fileno(), fd);
    Connection assigned;
    assigned = std::move(moved);
    EXPECT_EQ(assigned.fileno(), fd);
    assigned.send(5);
    EXPECT_EQ(b.recv<int>(), 5);
}

TEST(Connection, DetachAndFromFdHandADescriptorOver) {
    const int fds_before = mproc::testing::count_open_fds();
    {
        auto [a, b] = mproc::Pipe();
        const int fd = a.detach();
        EXPECT_TRUE(a.closed());
        EXPECT_GE(::fcntl(fd, F_GETFD), 0) << "detach() closed the descriptor";
        Connection adopted = Connection::from_fd(fd);
        adopted.send_bytes("adopted");
        EXPECT_EQ(text(b.recv_bytes()), "adopted");
        int p[2];
        ASSERT_EQ(::pipe(p), 0);
        Connection write_only = Connection::from_fd(p[1], false, true);
        Connection read_only = Connection::from_fd(p[0], true, false);
        write_only.send(3);
        EXPECT_EQ(read_only.recv<int>(), 3);
        EXPECT_THROW(Connection::from_fd(p[0], false, false), mproc::UsageError);
        EXPECT_THROW(Connection::from_fd(-1), mproc::UsageError);
    }
    EXPECT_EQ(mproc::testing::count_open_fds(), fds_before);
}

TEST(Connection, LargeMessagesCrossWhole) {
    auto [a, b] = mproc::Pipe();
    std::vector<std::byte> big(3 * 1024 * 1024 + 17);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 131 % 251);
    std::vector<std::uint32_t> values(300000);
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<std::uint32_t>(i * 7);
    std::thread sender([&] {
        a.send_bytes(big);
        a.send(values);
    });
    EXPECT_EQ(b.recv_bytes(), big);
    EXPECT_EQ(b.recv<std::vector<std::uint32_t>>(), values);
    sender.join();
}

TEST(Connection, ReadsPythonsLongLengthForm) {
    auto [a, b] = mproc::Pipe();
    // -1, then an 8-byte length: what Python sends for messages over 0x7fffffff bytes, and
    // accepts for any length.
    std::vector<std::byte> frame = {std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff},
                                    std::byte{0},    std::byte{0},    std::byte{0},    std::byte{0},
                                    std::byte{0},    std::byte{0},    std::byte{0},    std::byte{5}};
    for (std::byte c : bytes("hello")) frame.push_back(c);
    write_raw(a.fileno(), frame);
    EXPECT_EQ(text(b.recv_bytes()), "hello");
}

TEST(Frame, HeadersAreBigEndianWithPythonsLongForm) {
    const auto short_form = mproc::transport::encode_frame_header(0x01020304);
    ASSERT_EQ(short_form.size, 4u);
    EXPECT_EQ(short_form.bytes[0], std::byte{1});
    EXPECT_EQ(short_form.bytes[3], std::byte{4});
    EXPECT_EQ(mproc::transport::encode_frame_header(0x7fffffff).size, 4u);
    const auto long_form = mproc::transport::encode_frame_header(0x80000000ULL);
    ASSERT_EQ(long_form.size, 12u);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(long_form.bytes[i], std::byte{0xff});
    EXPECT_EQ(long_form.bytes[7], std::byte{0});
    EXPECT_EQ(long_form.bytes[8], std::byte{0x80});
    EXPECT_EQ(long_form.bytes[11], std::byte{0});
    EXPECT_EQ(mproc::transport::decode_long_length(std::span<const std::byte, 8>(long_form.bytes.data() + 4, 8)),
              0x80000000ULL);
}

TEST(Connection, ValueThatDoesNotDecodeClosesTheConnection) {
    auto [a, b] = mproc::Pipe();
    a.send_bytes("xyz");  // three bytes are not a uint64
    EXPECT_THROW(b.recv<std::uint64_t>(), mproc::DecodeError);
    EXPECT_TRUE(b.closed());
}

TEST(Connection, FixedSizeValuesAreReadWithoutTouchingTheNextMessage) {
    auto [a, b] = mproc::Pipe();
    a.send(1);
    a.send(2);
    a.send(std::int16_t{3});
    a.send(true);
    a.send(std::string("after"));
    EXPECT_EQ(b.recv<int>(), 1);
    EXPECT_EQ(b.recv<int>(), 2);
    EXPECT_EQ(b.recv<std::int16_t>(), 3);
    EXPECT_TRUE(b.recv<bool>());
    EXPECT_EQ(b.recv<std::string>(), "after");
    // A shorter message than the value asked for: the read ran into the next message, so the
    // connection is closed with the DecodeError.
    a.send_bytes("ab");
    a.send(9);
    EXPECT_THROW(b.recv<std::uint64_t>(), mproc::DecodeError);
    EXPECT_TRUE(b.closed());
}

TEST(Connection, FixedSizeValueInPythonsLongFormIsRead) {
    auto [a, b] = mproc::Pipe();
    std::vector<std::byte> frame = {std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff},
                                    std::byte{0},    std::byte{0},    std::byte{0},    std::byte{0},
                                    std::byte{0},    std::byte{0},    std::byte{0},    std::byte{4}};
    const auto value = mproc::dumps(0x01020304);
    frame.insert(frame.end(), value.begin(), value.end());
    a.send(5);
    write_raw(a.fileno(), frame);
    a.send(6);
    EXPECT_EQ(b.recv<int>(), 5);
    EXPECT_EQ(b.recv<int>(), 0x01020304);
    EXPECT_EQ(b.recv<int>(), 6);
}

TEST(Connection, MaxMessageSizeIsPerConnection) {
    auto [a, b] = mproc::Pipe();
    EXPECT_EQ(b.max_message_size(), mproc::kDefaultMaxMessageSize);
    b.set_max_message_size(100);
    a.send_bytes(std::vector<std::byte>(100));
    EXPECT_EQ(b.recv_bytes().size(), 100u);
    a.send_bytes(std::vector<std::byte>(101));
    try {
        b.recv_bytes();
        FAIL() << "101 bytes passed a 100-byte limit";
    } catch (const mproc::ProtocolError& e) {
        EXPECT_NE(std::string(e.what()).find("maximum message size of 100"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(b.closed());
    EXPECT_THROW(a.set_max_message_size(0), mproc::UsageError);
}

// ---- Connections and child processes ----

TEST(ConnectionWithProcess, ForkedChildUsesAnInheritedEnd) {
    auto [parent_end, child_end] = mproc::Pipe();
    mproc::Process child([&child_end] {
        const int n = child_end.recv<int>();
        child_end.send(std::string("got ") + std::to_string(n));
    });
    child.start();
    child_end.close();  // the parent's copy, so that the child's exit is end of file here
    parent_end.send(41);
    EXPECT_EQ(parent_end.recv<std::string>(), "got 41");
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
    EXPECT_THROW(parent_end.recv<int>(), mproc::EOFError);
}

TEST(ConnectionWithProcess, ConnectionCanBeATargetArgument) {
    auto [reader, writer] = mproc::Pipe(false);
    mproc::Process child([](Connection& out, int n) { out.send(std::vector<int>(static_cast<std::size_t>(n), n)); },
                         std::ref(writer), 3);
    child.start();
    writer.close();
    EXPECT_EQ(reader.recv<std::vector<int>>(), (std::vector<int>{3, 3, 3}));
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

// A Connection as a Process argument, under every start method: inherited under fork, its
// descriptor sent with the start request under spawn and forkserver.
namespace {

void reply_doubled(Connection& conn) { conn.send(conn.recv<int>() * 2); }

class ConnectionStartMethods : public ::testing::TestWithParam<mproc::StartMethod> {
protected:
    void SetUp() override { mproc::set_start_method(std::string(mproc::to_string(GetParam())), true); }
    void TearDown() override { mproc::set_start_method(std::nullopt, true); }
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(StartMethods, ConnectionStartMethods,
                         ::testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                           mproc::StartMethod::forkserver),
                         [](const auto& info) { return std::string(mproc::to_string(info.param)); });

TEST_P(ConnectionStartMethods, PipeEndGivenAsArgumentWorksInTheChild) {
    auto [parent_end, child_end] = mproc::Pipe();
    mproc::Process child(reply_doubled, std::move(child_end));
    child.start();
    parent_end.send(21);
    EXPECT_EQ(parent_end.recv<int>(), 42);
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

TEST_P(ConnectionStartMethods, SimplexEndsAndClientConnectionsTravelWithTheirFlagsAndLimits) {
    auto [reader, writer] = mproc::Pipe(false);
    writer.set_max_message_size(12345);
    mproc::Listener listener;
    Connection client = mproc::Client(listener.address());
    Connection server = listener.accept();
    mproc::Process child(
        [](Connection& out, Connection& socket) {
            const bool flags_kept = !out.readable() && out.writable() && socket.readable() && socket.writable();
            out.send(std::vector<std::size_t>{flags_kept ? 1u : 0u, out.max_message_size()});
            socket.send_bytes("over the client's socket");
        },
        std::move(writer), std::move(client));
    child.start();
    EXPECT_EQ(reader.recv<std::vector<std::size_t>>(), (std::vector<std::size_t>{1, 12345}));
    EXPECT_EQ(text(server.recv_bytes()), "over the client's socket");
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

TEST(ConnectionWithProcess, ConnectionCannotTravelThroughAConnection) {
    auto [a, b] = mproc::Pipe();
    try {
        a.send(b);
        FAIL() << "a connection was sent through a connection";
    } catch (const mproc::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("a Connection can only be shared with a child process"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(b.poll()) << "nothing may be sent when encoding fails";
}

// ---- connection::wait ----

TEST(Wait, ReturnsTheReadyConnectionsInTheirOrder) {
    auto [a1, b1] = mproc::Pipe();
    auto [a2, b2] = mproc::Pipe();
    auto [a3, b3] = mproc::Pipe();
    a3.send(3);
    a1.send(1);
    std::vector<Connection*> readers = {&b1, &b2, &b3};
    const std::vector<Connection*> ready = mproc::connection::wait(readers);
    ASSERT_EQ(ready.size(), 2u);
    EXPECT_EQ(ready[0], &b1);
    EXPECT_EQ(ready[1], &b3);
    for (Connection* c : ready) c->recv<int>();
    EXPECT_TRUE(mproc::connection::wait(readers, 0s).empty());
}

TEST(Wait, TimesOutWithNothingReady) {
    auto [a, b] = mproc::Pipe();
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(mproc::connection::wait({&b}, 60ms).empty());
    EXPECT_GE(std::chrono::steady_clock::now() - start, 60ms);
    EXPECT_TRUE(mproc::connection::wait(std::vector<int>{}, 1ms).empty());
    EXPECT_THROW(mproc::connection::wait(std::vector<int>{}), mproc::UsageError);
}

TEST(Wait, VectorOfConnectionsGivesPointersToTheReadyOnes) {
    std::vector<Connection> readers;
    std::vector<Connection> writers;
    for (int i = 0; i < 3; ++i) {
        auto [r, w] = mproc::Pipe(false);
        readers.push_back(std::move(r));
        writers.push_back(std::move(w));
    }
    writers[1].send(11);
    const std::vector<Connection*> ready = mproc::connection::wait(readers, 1s);
    ASSERT_EQ(ready.size(), 1u);
    EXPECT_EQ(ready[0], &readers[1]);
    EXPECT_EQ(ready[0]->recv<int>(), 11);
}

TEST(Wait, WatchesProcessesSentinelsAndRawDescriptorsTogether) {
    auto [a, b] = mproc::Pipe();
    // The child runs until it is let go, once wait() below is blocked.
    auto [gate_child, gate] = mproc::Pipe(false);
    mproc::Process sleeper([](Connection gate) { gate.recv_bytes(); }, std::move(gate_child));
    sleeper.start();
    using Object = std::variant<Connection*, mproc::Process, int>;
    int raw[2];
    ASSERT_EQ(::pipe(raw), 0);
    const std::vector<Object> objects = {&b, sleeper, raw[0]};
    std::atomic<bool> released{false};
    std::thread releaser = mproc::testing::act_once_blocked(mproc::testing::this_thread_id(), mproc::testing::wchan::poll,
                                                            [&gate, &released] {
                                                                released = true;
                                                                gate.send_bytes(std::string_view("go"));
                                                            });
    std::vector<Object> ready = mproc::connection::wait(objects, 60s);
    EXPECT_TRUE(released) << "wait() returned before the child was let go";
    releaser.join();
    ASSERT_EQ(ready.size(), 1u);
    EXPECT_EQ(ready[0].index(), 1u) << "the process should have been the one ready";
    sleeper.join();

    ASSERT_EQ(::write(raw[1], "x", 1), 1);
    ready = mproc::connection::wait(objects, 5s);
    ASSERT_EQ(ready.size(), 2u);
    EXPECT_EQ(ready[1].index(), 2u);
    EXPECT_EQ(mproc::connection::wait({sleeper.sentinel(), raw[0]}).size(), 2u);
    ::close(raw[0]);
    ::close(raw[1]);
}

TEST(Wait, RefusesClosedConnectionsAndDescriptors) {
    auto [a, b] = mproc::Pipe();
    b.close();
    EXPECT_THROW(mproc::connection::wait({&b}, 0s), mproc::OSError);  // "handle is closed", as Python
    int raw[2];
    ASSERT_EQ(::pipe(raw), 0);
    ::close(raw[0]);
    ::close(raw[1]);
    EXPECT_THROW(mproc::connection::wait({raw[0]}, 0s), mproc::OSError);
}

// ---- Listener and Client ----

TEST(Listener, DefaultIsAPrivateUnixSocketThatGoesAwayOnClose) {
    mproc::Listener listener;
    const auto* address = std::get_if<mproc::UnixAddress>(&listener.address());
    ASSERT_NE(address, nullptr) << "the default family is AF_UNIX";
    struct stat st {};
    ASSERT_EQ(::stat(address->path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    struct stat dir {};
    const std::string directory = address->path.substr(0, address->path.rfind('/'));
    ASSERT_EQ(::stat(directory.c_str(), &dir), 0);
    EXPECT_EQ(dir.st_mode & 0777, 0700u);

    Connection client = mproc::Client(listener.address());
    Connection server = listener.accept();
    client.send(std::string("ping"));
    EXPECT_EQ(server.recv<std::string>(), "ping");
    server.send_bytes("pong");
    EXPECT_EQ(text(client.recv_bytes()), "pong");
    ASSERT_TRUE(listener.last_accepted().has_value());
    EXPECT_TRUE(std::holds_alternative<mproc::UnixAddress>(*listener.last_accepted()));

    const std::string path = address->path;
    listener.close();
    EXPECT_TRUE(listener.closed());
    EXPECT_NE(::access(path.c_str(), F_OK), 0) << "the socket file outlived the listener";
    try {
        listener.accept();
        ADD_FAILURE() << "a closed listener accepted";
    } catch (const mproc::OSError& e) {  // as Python
        EXPECT_STREQ(e.what(), "listener is closed");
    }
}

TEST(Listener, GivenUnixPathIsUsedAndFamilyIsDeducedFromIt) {
    const std::string path = ::testing::TempDir() + "/mproc-listener-" + std::to_string(::getpid());
    ::unlink(path.c_str());
    mproc::Listener listener({.address = path, .authkey = key("secret")});
    EXPECT_EQ(mproc::connection::address_type(listener.address()), mproc::Family::af_unix);
    EXPECT_EQ(std::get<mproc::UnixAddress>(listener.address()).path, path);
    EXPECT_THROW(mproc::Listener({.address = path}), mproc::OSError) << "the path is in use";
    auto pending_client = client_async(path, {.authkey = key("secret")});
    Connection server = listener.accept();
    Connection client = pending_client.get();
    client.send(1.5);
    EXPECT_EQ(server.recv<double>(), 1.5);
}

TEST(Listener, TcpNeedsAnAuthkeyUnlessExplicitlyAllowed) {
    try {
        mproc::Listener refused({.family = mproc::Family::af_inet});
        FAIL() << "a TCP listener without authkey was created";
    } catch (const mproc::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("allow_unauthenticated_tcp"), std::string::npos);
    }
    EXPECT_THROW(mproc::Listener({.address = mproc::TcpAddress{"127.0.0.1", 0}}), mproc::UsageError);
    mproc::Listener open({.family = mproc::Family::af_inet, .allow_unauthenticated_tcp = true});
    const auto& tcp = std::get<mproc::TcpAddress>(open.address());
    EXPECT_EQ(tcp.host, "127.0.0.1") << "TCP listeners bind to loopback unless told otherwise";
    EXPECT_NE(tcp.port, 0);
    Connection client = mproc::Client(open.address());
    Connection server = open.accept();
    server.send(9);
    EXPECT_EQ(client.recv<int>(), 9);
}

TEST(Listener, TcpWithAuthkeyAuthenticatesAndReportsThePeer) {
    mproc::Listener listener({.family = mproc::Family::af_inet, .authkey = key("k")});
    auto pending_client = client_async(listener.address(), {.authkey = key("k")});
    Connection server = listener.accept();
    Connection client = pending_client.get();
    sockaddr_in local{};
    socklen_t length = sizeof local;
    ASSERT_EQ(::getsockname(client.fileno(), reinterpret_cast<sockaddr*>(&local), &length), 0);
    const auto& peer = std::get<mproc::TcpAddress>(*listener.last_accepted());
    EXPECT_EQ(peer.host, "127.0.0.1");
    EXPECT_EQ(peer.port, ntohs(local.sin_port));
    server.send_bytes("authenticated");
    EXPECT_EQ(text(client.recv_bytes()), "authenticated");
    EXPECT_EQ(mproc::connection::to_string(mproc::TcpAddress{"127.0.0.1", 80}), "127.0.0.1:80");
}

TEST(Listener, EmptyAuthkeyStillAuthenticates) {
    mproc::Listener listener({.authkey = key("")});
    auto wrong = client_async(listener.address(), {.authkey = key("x"), .handshake_timeout = 5s});
    EXPECT_THROW(listener.accept(), mproc::AuthenticationError);
    EXPECT_THROW(wrong.get(), mproc::AuthenticationError);
    auto right = client_async(listener.address(), {.authkey = key("")});
    Connection server = listener.accept();
    Connection client = right.get();
    client.send(1);
    EXPECT_EQ(server.recv<int>(), 1);
}

TEST(Listener, WrongKeyFailsOnBothSidesAndTheListenerGoesOn) {
    mproc::Listener listener({.authkey = key("right")});
    auto wrong = client_async(listener.address(), {.authkey = key("wrong")});
    try {
        listener.accept();
        FAIL() << "accept() returned a peer with a wrong key";
    } catch (const mproc::AuthenticationError& e) {
        EXPECT_STREQ(e.what(), "digest received was wrong");
    }
    try {
        wrong.get();
        FAIL() << "the client was let in with a wrong key";
    } catch (const mproc::AuthenticationError& e) {
        EXPECT_STREQ(e.what(), "digest sent was rejected");
    }
    auto right = client_async(listener.address(), {.authkey = key("right")});
    Connection server = listener.accept();
    Connection client = right.get();
    client.send(2);
    EXPECT_EQ(server.recv<int>(), 2);
}

TEST(Listener, AbstractNamesAndMismatchedFamiliesAreRefused) {
    const std::string abstract = std::string("\0mproc-test-", 12) + std::to_string(::getpid());
    EXPECT_THROW(mproc::Listener({.address = abstract}), mproc::UsageError);
    mproc::Listener allowed({.address = abstract, .allow_abstract_namespace = true});
    Connection client = mproc::Client(abstract);
    Connection server = allowed.accept();
    client.send(4);
    EXPECT_EQ(server.recv<int>(), 4);
    EXPECT_EQ(mproc::connection::to_string(allowed.address()).front(), '@');

    EXPECT_THROW(mproc::Listener({.address = "/tmp/x", .family = mproc::Family::af_inet}), mproc::UsageError);
    EXPECT_THROW(mproc::Client(mproc::TcpAddress{"127.0.0.1", 1}, {.family = mproc::Family::af_unix}),
                 mproc::UsageError);
    EXPECT_THROW(mproc::Listener({.address = std::string(200, 'p')}), mproc::OSError) << "path too long";
}

TEST(Listener, AcceptWithTimeoutReturnsNothingWhenNoOneComes) {
    mproc::Listener listener({.authkey = key("k")});
    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(listener.accept(50ms).has_value());
    EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
}

TEST(Listener, ClientToNoListenerIsRefused) {
    std::string path;
    {
        mproc::Listener gone;
        path = std::get<mproc::UnixAddress>(gone.address()).path;
    }
    EXPECT_THROW(mproc::Client(path), mproc::OSError);
}

TEST(Listener, ForkedChildClosingItsCopyLeavesTheSocketFile) {
    mproc::Listener listener;
    const std::string path = std::get<mproc::UnixAddress>(listener.address()).path;
    mproc::Process child([&listener] { listener.close(); });
    child.start();
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
    EXPECT_EQ(::access(path.c_str(), F_OK), 0) << "a child removed its parent's socket file";
    Connection client = mproc::Client(path);
    EXPECT_FALSE(listener.accept().closed());
}

TEST(Listener, ServesManyClientsFromAChildProcess) {
    mproc::Listener listener({.family = mproc::Family::af_inet, .authkey = key("many")});
    const mproc::Address address = listener.address();
    mproc::Process server([&listener] {
        for (int i = 0; i < 5; ++i) {
            Connection c = listener.accept();
            c.send(c.recv<int>() * 2);
        }
    });
    server.start();
    listener.close();
    for (int i = 0; i < 5; ++i) {
        Connection c = mproc::Client(address, {.authkey = key("many")});
        c.send(i);
        EXPECT_EQ(c.recv<int>(), 2 * i);
    }
    server.join();
    EXPECT_EQ(server.exitcode(), 0);
}

// ---- The challenge, message by message ----

namespace {

using mproc::transport::Handshake;
using mproc::transport::HandshakeRole;

// Runs two machines against each other in memory; `tamper` may change bytes in flight.
void run_pair(Handshake& server, Handshake& client,
              const std::function<void(bool from_server, std::vector<std::byte>&)>& tamper = {}) {
    std::vector<std::byte> to_client, to_server;
    for (int round = 0; round < 20 && !(server.done() && client.done()); ++round) {
        auto pump = [&](Handshake& from, std::vector<std::byte>& queue, bool from_server) {
            std::vector<std::byte> out(from.output().begin(), from.output().end());
            from.consume_output(out.size());
            if (tamper && !out.empty()) tamper(from_server, out);
            queue.insert(queue.end(), out.begin(), out.end());
        };
        auto deliver = [](Handshake& to, std::vector<std::byte>& queue) {
            while (!queue.empty() && to.wanted() > 0) {
                const std::size_t n = std::min(to.wanted(), queue.size());
                std::vector<std::byte> chunk(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
                queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
                to.feed(chunk);
            }
        };
        pump(server, to_client, true);
        deliver(client, to_client);
        pump(client, to_server, false);
        deliver(server, to_server);
    }
}

std::span<const std::byte> key_bytes(const std::string& k) { return std::as_bytes(std::span(k.data(), k.size())); }

}  // namespace

TEST(Handshake, MatchingKeysCompleteWithSha256) {
    const std::string k = "shared";
    Handshake server(HandshakeRole::server, key_bytes(k), false);
    Handshake client(HandshakeRole::client, key_bytes(k), false);
    std::string first_message;
    run_pair(server, client, [&](bool from_server, std::vector<std::byte>& out) {
        if (from_server && first_message.empty()) first_message = text(out);
    });
    EXPECT_TRUE(server.done());
    EXPECT_TRUE(client.done());
    EXPECT_EQ(first_message.substr(4, 19), "#CHALLENGE#{sha256}");
    EXPECT_EQ(first_message.size(), 4u + 11 + 8 + 40);
}

TEST(Handshake, ChallengesAreFresh) {
    const std::string k = "shared";
    Handshake one(HandshakeRole::server, key_bytes(k), false);
    Handshake two(HandshakeRole::server, key_bytes(k), false);
    EXPECT_NE(text(one.output()), text(two.output()));
}

TEST(Handshake, ClientDetectsAServerThatAnswersWrongly) {
    const std::string k = "shared";
    Handshake server(HandshakeRole::server, key_bytes(k), false);
    Handshake client(HandshakeRole::client, key_bytes(k), false);
    int server_messages = 0;
    try {
        run_pair(server, client, [&](bool from_server, std::vector<std::byte>& out) {
            // The server's third message is its answer to the client's challenge.
            if (from_server && ++server_messages == 3) out.back() ^= std::byte{1};
        });
        FAIL() << "the client accepted a wrong answer";
    } catch (const mproc::AuthenticationError& e) {
        EXPECT_STREQ(e.what(), "digest received was wrong");
    }
    EXPECT_EQ(text(client.output()).substr(4), "#FAILURE#") << "the client tells the server";
}

TEST(Handshake, DigestNameIsCoveredByTheMac) {
    // A middleman who rewrites the client's challenge to ask for another digest gets an answer
    // the client rejects: the MAC covers the "{sha256}" prefix too.
    const std::string k = "shared";
    Handshake server(HandshakeRole::server, key_bytes(k), false);
    Handshake client(HandshakeRole::client, key_bytes(k), false);
    try {
        run_pair(server, client, [&](bool from_server, std::vector<std::byte>& out) {
            const std::string s = text(out);
            if (!from_server && s.find("#CHALLENGE#{sha256}") != std::string::npos)
                out = bytes(s.substr(0, 4) + "#CHALLENGE#{sha384}" + s.substr(4 + 19));
        });
        FAIL() << "the client accepted an answer to a rewritten challenge";
    } catch (const mproc::AuthenticationError& e) {
        EXPECT_STREQ(e.what(), "digest received was wrong");
    }
}
