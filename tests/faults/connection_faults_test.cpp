// Hostile and failing peers of connections (spec/faults.md rows 17-25 and 30): truncated frames,
// lying lengths, random bytes, wrong or replayed digests, idle sockets before authentication,
// and writes to a peer that is gone. Each must give a clear exception, close only the connection
// concerned, and leave the process able to go on.
#include <gtest/gtest.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fuzz/fuzz_targets.hpp"
#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/connection.hpp"
#include "mproc/process.hpp"
#include "transport/frame.hpp"

using namespace std::chrono_literals;
using mproc::Connection;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUnderAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kUnderAddressSanitizer = true;
#else
constexpr bool kUnderAddressSanitizer = false;
#endif
#else
constexpr bool kUnderAddressSanitizer = false;
#endif

std::vector<std::byte> bytes(std::string_view text) {
    const auto view = std::as_bytes(std::span(text.data(), text.size()));
    return {view.begin(), view.end()};
}

std::string text(std::span<const std::byte> data) { return {reinterpret_cast<const char*>(data.data()), data.size()}; }

std::vector<std::byte> be32(std::int32_t value) {
    const auto u = static_cast<std::uint32_t>(value);
    return {std::byte(u >> 24), std::byte(u >> 16), std::byte(u >> 8), std::byte(u)};
}

std::vector<std::byte> be64(std::uint64_t value) {
    std::vector<std::byte> out;
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(std::byte(value >> shift));
    return out;
}

std::vector<std::byte> operator+(std::vector<std::byte> a, const std::vector<std::byte>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// A raw socket peer: what it writes reaches `connection`; then it shuts its side.
struct RawPeer {
    Connection connection;
    int raw = -1;

    RawPeer() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        connection = Connection::from_fd(fds[0]);
        raw = fds[1];
    }
    ~RawPeer() {
        if (raw >= 0) ::close(raw);
    }
    void write(const std::vector<std::byte>& data) const {
        ASSERT_EQ(::send(raw, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size()));
    }
    void finish() {
        ::close(raw);
        raw = -1;
    }
};

// Expects a ProtocolError whose message contains `words`, and the connection closed after it.
void expect_protocol_error(Connection& c, const std::string& words) {
    try {
        c.recv_bytes();
        ADD_FAILURE() << "no ProtocolError";
    } catch (const mproc::ProtocolError& e) {
        EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
    EXPECT_TRUE(c.closed()) << "a connection out of step with its peer must be closed";
}

// Runs `body` in a child process whose address space is capped at `limit` bytes: an allocation of
// the announced length would fail there. The child exits 0 when `body` returns.
void in_child_with_memory_limit(std::size_t limit, std::function<void()> body) {
    mproc::Process child([limit, body = std::move(body)] {
        const rlimit cap{limit, limit};
        if (::setrlimit(RLIMIT_AS, &cap) != 0) mproc::exit(3);
        body();
    });
    child.start();
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

mproc::AuthKey key(std::string_view k) { return mproc::AuthKey(k); }

std::future<Connection> client_async(mproc::Address address, mproc::ClientOptions options = {}) {
    return std::async(std::launch::async, [address = std::move(address), options = std::move(options)] {
        return mproc::Client(address, options);
    });
}

// A socket connected to a listener, speaking bytes by hand.
class RawClient {
public:
    explicit RawClient(const mproc::Address& address) {
        if (const auto* unix_address = std::get_if<mproc::UnixAddress>(&address)) {
            fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un where{};
            where.sun_family = AF_UNIX;
            std::strncpy(where.sun_path, unix_address->path.c_str(), sizeof where.sun_path - 1);
            EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&where), sizeof where), 0) << std::strerror(errno);
        } else {
            fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in where{};
            where.sin_family = AF_INET;
            where.sin_port = htons(std::get<mproc::TcpAddress>(address).port);
            where.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&where), sizeof where), 0) << std::strerror(errno);
        }
    }
    ~RawClient() {
        if (fd_ >= 0) ::close(fd_);
    }
    int fd() const { return fd_; }
    // One frame's payload, via a Connection view of the socket that does not own it.
    std::vector<std::byte> read_message() {
        Connection view = Connection::from_fd(fd_);
        std::vector<std::byte> message = view.recv_bytes(256);
        view.detach();
        return message;
    }
    void write_message(const std::vector<std::byte>& payload) {
        Connection view = Connection::from_fd(fd_);
        view.send_bytes(payload);
        view.detach();
    }

private:
    int fd_ = -1;
};

std::vector<std::byte> hmac(const EVP_MD* digest, std::string_view k, std::span<const std::byte> message) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    ::HMAC(digest, k.data(), static_cast<int>(k.size()), reinterpret_cast<const unsigned char*>(message.data()),
           message.size(), out, &length);
    return {reinterpret_cast<std::byte*>(out), reinterpret_cast<std::byte*>(out) + length};
}

}  // namespace

// ---- Row 17: end of file inside a frame ----

TEST(ConnectionFaults, EndOfFileInTheLengthPrefix) {
    RawPeer peer;
    peer.write({std::byte{0}, std::byte{0}});
    peer.finish();
    expect_protocol_error(peer.connection, "got end of file during message");
}

TEST(ConnectionFaults, EndOfFileInTheLongLength) {
    RawPeer peer;
    peer.write(be32(-1) + std::vector<std::byte>{std::byte{0}, std::byte{0}, std::byte{0}});
    peer.finish();
    expect_protocol_error(peer.connection, "got end of file during message");
}

TEST(ConnectionFaults, EndOfFileInTheBody) {
    RawPeer peer;
    peer.write(be32(10) + bytes("abc"));
    peer.finish();
    expect_protocol_error(peer.connection, "3 of 10 bytes");
}

TEST(ConnectionFaults, EndOfFileInTheBodyOfTypedAndIntoReads) {
    {
        RawPeer peer;
        peer.write(be32(8) + bytes("abcd"));
        peer.finish();
        EXPECT_THROW(peer.connection.recv<std::uint64_t>(), mproc::ProtocolError);
        EXPECT_TRUE(peer.connection.closed());
    }
    {
        RawPeer peer;
        peer.write(be32(8) + bytes("abcd"));
        peer.finish();
        std::array<std::byte, 16> buffer{};
        EXPECT_THROW(peer.connection.recv_bytes_into(buffer), mproc::ProtocolError);
        EXPECT_TRUE(peer.connection.closed());
    }
}

TEST(ConnectionFaults, PeerProcessDyingMidMessage) {
    auto [reader, writer] = mproc::Pipe(false);
    mproc::Process child([&writer] {
        const auto header = mproc::transport::encode_frame_header(1 << 20);
        ::write(writer.fileno(), header.bytes.data(), header.size);
        ::write(writer.fileno(), "partial", 7);
        ::_exit(0);
    });
    child.start();
    writer.close();
    expect_protocol_error(reader, "got end of file during message");
    child.join();
}

// ---- Rows 18 and 19: lying lengths ----

TEST(ConnectionFaults, NegativeLengthOtherThanMinusOneIsRejected) {
    for (std::int32_t length : {-2, -5, INT32_MIN}) {
        RawPeer peer;
        peer.write(be32(length) + bytes("payload that would follow"));
        expect_protocol_error(peer.connection, "invalid message length " + std::to_string(length));
    }
}

TEST(ConnectionFaults, AbsurdLengthsAreRejectedBeforeAnyAllocation) {
    if (kUnderAddressSanitizer) GTEST_SKIP() << "AddressSanitizer reserves more address space than the cap allows";
    in_child_with_memory_limit(256u << 20, [] {
        {
            RawPeer peer;
            peer.write(be32(0x7fffffff));
            expect_protocol_error(peer.connection, "over the maximum message size");
        }
        {
            RawPeer peer;
            peer.write(be32(-1) + be64(std::uint64_t{1} << 62));
            expect_protocol_error(peer.connection, "over the maximum message size");
        }
        {
            RawPeer peer;
            peer.write(be32(-1) + be64(~std::uint64_t{0}));
            expect_protocol_error(peer.connection, "over the maximum message size");
        }
        if (::testing::Test::HasFailure()) mproc::exit(1);
    });
}

TEST(ConnectionFaults, LengthUnderTheLimitCostsOnlyWhatArrives) {
    if (kUnderAddressSanitizer) GTEST_SKIP() << "AddressSanitizer reserves more address space than the cap allows";
    // The limit raised to 2 GiB and a peer announcing 1.9 GiB then sending 1 KiB: under a 256 MiB
    // address-space cap the read fails cleanly at end of file, not at allocation.
    in_child_with_memory_limit(256u << 20, [] {
        RawPeer peer;
        peer.connection.set_max_message_size(std::size_t{2} << 30);
        peer.write(be32(0x79999999) + std::vector<std::byte>(1024));
        peer.finish();
        expect_protocol_error(peer.connection, "got end of file during message");
        if (::testing::Test::HasFailure()) mproc::exit(1);
    });
}

// ---- Row 20: random bytes ----

TEST(ConnectionFaults, RandomBytesGiveOnlyDocumentedErrorsAndCloseOnlyThatConnection) {
    auto [bystander_a, bystander_b] = mproc::Pipe();
    std::mt19937 random(20240917);
    for (int i = 0; i < 3000; ++i) {
        std::vector<std::uint8_t> input(1 + random() % 300);
        for (auto& b : input) b = static_cast<std::uint8_t>(random());
        // Plausible prefixes half of the time, so that bodies get read too.
        if (input.size() > 5 && i % 2 == 0) {
            input[1] = 0;
            input[2] = 0;
            input[3] = 0;
            input[4] = static_cast<std::uint8_t>(random() % 64);
        }
        mproc::fuzz::frame_reader_one_input(input);
        mproc::fuzz::handshake_one_input(input);
    }
    bystander_a.send(std::string("still here"));
    EXPECT_EQ(bystander_b.recv<std::string>(), "still here");
}

TEST(ConnectionFaults, FuzzCorpusReplays) {
    // The seeds and any crash reproducers kept in fuzz/corpus (see scripts/fuzz).
    const std::filesystem::path root = std::filesystem::path(MPROC_SOURCE_DIR) / "fuzz" / "corpus";
    int replayed = 0;
    for (const char* target : {"frame_reader", "handshake"}) {
        const auto directory = root / target;
        if (!std::filesystem::exists(directory)) continue;
        for (const auto& entry : std::filesystem::directory_iterator(directory)) {
            std::ifstream in(entry.path(), std::ios::binary);
            const std::vector<std::uint8_t> input((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            if (std::string(target) == "frame_reader")
                mproc::fuzz::frame_reader_one_input(input);
            else
                mproc::fuzz::handshake_one_input(input);
            ++replayed;
        }
    }
    EXPECT_GT(replayed, 0) << "no corpus under " << root;
}

// ---- Row 22: wrong authkey, over TCP and AF_UNIX ----

TEST(ConnectionFaults, WrongAuthkeyFailsBothSidesOverTcpAndUnix) {
    for (mproc::Family family : mproc::connection::families) {
        mproc::Listener listener({.family = family, .authkey = key("right")});
        auto wrong = client_async(listener.address(), {.authkey = key("wrong")});
        EXPECT_THROW(listener.accept(), mproc::AuthenticationError);
        EXPECT_THROW(wrong.get(), mproc::AuthenticationError);
        auto missing = client_async(listener.address());  // no key at all: it is sent a challenge
        EXPECT_FALSE(listener.accept(100ms).has_value());
        Connection unauthenticated = missing.get();
        EXPECT_EQ(text(unauthenticated.recv_bytes()).substr(0, 11), "#CHALLENGE#");
    }
}

// ---- Row 23: garbage, replayed and downgraded digests ----

TEST(ConnectionFaults, GarbageDigestIsRejected) {
    mproc::Listener listener({.authkey = key("k")});
    RawClient raw(listener.address());
    auto accepted = std::async(std::launch::async, [&] { return listener.accept(2s); });
    const std::vector<std::byte> challenge = raw.read_message();
    EXPECT_EQ(text(challenge).substr(0, 19), "#CHALLENGE#{sha256}");
    raw.write_message(bytes("{sha256}not a digest at all"));
    EXPECT_EQ(text(raw.read_message()), "#FAILURE#");
    EXPECT_THROW(accepted.get(), mproc::AuthenticationError);
}

TEST(ConnectionFaults, ReplayedAnswerFailsAgainstAFreshChallenge) {
    mproc::Listener listener({.authkey = key("k")});
    std::vector<std::byte> recorded_answer;
    {
        // An honest exchange, by hand, recorded.
        RawClient raw(listener.address());
        auto accepted = std::async(std::launch::async, [&] { return listener.accept(5s); });
        const std::vector<std::byte> challenge = raw.read_message();
        recorded_answer = bytes("{sha256}") + hmac(EVP_sha256(), "k", std::span(challenge).subspan(11));
        raw.write_message(recorded_answer);
        EXPECT_EQ(text(raw.read_message()), "#WELCOME#") << "the honest answer is accepted";
        const std::vector<std::byte> ours = bytes("{sha256}") + std::vector<std::byte>(40, std::byte{9});
        raw.write_message(bytes("#CHALLENGE#") + ours);
        EXPECT_EQ(raw.read_message(), bytes("{sha256}") + hmac(EVP_sha256(), "k", ours));
        raw.write_message(bytes("#WELCOME#"));
        EXPECT_TRUE(accepted.get().has_value());
    }
    RawClient replay(listener.address());
    auto accepted = std::async(std::launch::async, [&] { return listener.accept(5s); });
    const std::vector<std::byte> second_challenge = replay.read_message();
    replay.write_message(recorded_answer);
    EXPECT_EQ(text(replay.read_message()), "#FAILURE#");
    try {
        accepted.get();
        FAIL() << "a replayed answer was accepted";
    } catch (const mproc::AuthenticationError& e) {
        EXPECT_STREQ(e.what(), "digest received was wrong");
    }
}

TEST(ConnectionFaults, Md5AnswersAreRefusedUnlessLegacyIsEnabled) {
    for (const bool legacy : {false, true}) {
        for (const bool prefixed : {false, true}) {
            mproc::Listener listener({.authkey = key("k"), .legacy_md5 = legacy});
            RawClient raw(listener.address());
            auto accepted = std::async(std::launch::async, [&] { return listener.accept(2s); });
            const std::vector<std::byte> challenge = raw.read_message();
            const std::vector<std::byte> md5 = hmac(EVP_md5(), "k", std::span(challenge).subspan(11));
            raw.write_message(prefixed ? bytes("{md5}") + md5 : md5);  // Python 3.11 sends it raw
            const std::string verdict = text(raw.read_message());
            if (!legacy) {
                EXPECT_EQ(verdict, "#FAILURE#") << "prefixed=" << prefixed;
                try {
                    accepted.get();
                    ADD_FAILURE() << "an MD5 answer was accepted without legacy_md5";
                } catch (const mproc::AuthenticationError& e) {
                    EXPECT_NE(std::string(e.what()).find("legacy_md5"), std::string::npos) << e.what();
                }
            } else {
                EXPECT_EQ(verdict, "#WELCOME#") << "prefixed=" << prefixed;
                // Then we challenge the listener as Python 3.11 does: 20 bytes, no digest name.
                std::array<std::byte, 20> nonce{};
                nonce.fill(std::byte{7});
                raw.write_message(bytes("#CHALLENGE#") + std::vector<std::byte>(nonce.begin(), nonce.end()));
                EXPECT_EQ(raw.read_message(), hmac(EVP_md5(), "k", nonce)) << "a raw HMAC-MD5 answer";
                raw.write_message(bytes("#WELCOME#"));
                auto connection = accepted.get();
                ASSERT_TRUE(connection.has_value());
            }
        }
    }
}

TEST(ConnectionFaults, LegacyChallengeIsRefusedByDefaultClient) {
    // A listener speaking only Python 3.11's protocol: a 20-byte challenge without a digest name.
    mproc::Listener plain;  // no authkey: the test speaks the challenge by hand on the accepted socket
    auto client = client_async(plain.address(), {.authkey = key("k")});
    Connection server = plain.accept();
    server.send_bytes(bytes("#CHALLENGE#") + std::vector<std::byte>(20, std::byte{1}));
    try {
        client.get();
        FAIL() << "the client answered an MD5-only challenge without legacy_md5";
    } catch (const mproc::AuthenticationError& e) {
        EXPECT_NE(std::string(e.what()).find("legacy_md5"), std::string::npos) << e.what();
    }
}

TEST(ConnectionFaults, OversizeAndMalformedHandshakeMessages) {
    mproc::Listener listener({.authkey = key("k")});
    {
        RawClient raw(listener.address());
        auto accepted = std::async(std::launch::async, [&] { return listener.accept(2s); });
        raw.read_message();
        const auto huge = be32(1 << 30);  // announces 1 GiB before authentication
        ASSERT_EQ(::send(raw.fd(), huge.data(), huge.size(), MSG_NOSIGNAL), 4);
        try {
            accepted.get();
            FAIL();
        } catch (const mproc::AuthenticationError& e) {
            EXPECT_NE(std::string(e.what()).find("bad message length"), std::string::npos) << e.what();
        }
    }
    {
        RawClient raw(listener.address());
        auto accepted = std::async(std::launch::async, [&] { return listener.accept(2s); });
        raw.read_message();
        const auto negative = be32(-7);
        ASSERT_EQ(::send(raw.fd(), negative.data(), negative.size(), MSG_NOSIGNAL), 4);
        EXPECT_THROW(accepted.get(), mproc::AuthenticationError);
    }
    {
        // A client handed something other than a challenge.
        mproc::Listener plain;
        auto client = client_async(plain.address(), {.authkey = key("k")});
        Connection server = plain.accept();
        server.send_bytes("#WELCOME#");
        try {
            client.get();
            FAIL();
        } catch (const mproc::AuthenticationError& e) {
            EXPECT_STREQ(e.what(), "Protocol error, expected challenge");
        }
    }
}

// ---- Row 24: idle and slow peers before authentication ----

TEST(ConnectionFaults, TwoHundredIdleSocketsDoNotKeepARealClientOut) {
    for (mproc::Family family : mproc::connection::families) {
        // A backlog with room for every idle peer, so that each connect succeeds however late the
        // server runs; a handshake timeout longer than the test, so that no idle peer leaves on its
        // own: the real client gets in only if idle peers cannot keep it out.
        mproc::Listener listener({.family = family,
                                  .backlog = 256,
                                  .authkey = key("k"),
                                  .handshake_timeout = 60s,
                                  .max_pending_handshakes = 64});
        const mproc::Address address = listener.address();
        auto [report, report_child] = mproc::Pipe();
        // A daemon, so that a failing test does not wait for it at exit.
        mproc::Process server({.daemon = true}, [&listener, &report_child] {
            Connection real = listener.accept();
            real.send(real.recv<std::string>() + " accepted");
            // What 200 idle peers cost the listener: descriptors and threads.
            report_child.send(mproc::testing::count_open_fds());
            report_child.send(mproc::testing::count_entries("/proc/self/task"));
            report_child.recv<int>();  // stay until the parent has looked
        });
        server.start();
        // The parent keeps its copy open: closing it would remove the socket file, which is the
        // creator's to remove. It never accepts, so every peer goes to the child.
        report_child.close();

        std::vector<int> idle;
        for (int i = 0; i < 200; ++i) {
            const int fd = ::socket(family == mproc::Family::af_unix ? AF_UNIX : AF_INET,
                                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            ASSERT_GE(fd, 0);
            if (const auto* u = std::get_if<mproc::UnixAddress>(&address)) {
                sockaddr_un where{};
                where.sun_family = AF_UNIX;
                std::strncpy(where.sun_path, u->path.c_str(), sizeof where.sun_path - 1);
                ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&where), sizeof where), 0) << std::strerror(errno);
            } else {
                sockaddr_in where{};
                where.sin_family = AF_INET;
                where.sin_port = htons(std::get<mproc::TcpAddress>(address).port);
                where.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                const int connected = ::connect(fd, reinterpret_cast<sockaddr*>(&where), sizeof where);
                ASSERT_TRUE(connected == 0 || errno == EINPROGRESS) << std::strerror(errno);
            }
            idle.push_back(fd);
        }
        // The listener has taken in every idle peer once each can read: its challenge, or end of
        // file after it for the oldest ones, dropped to make room.
        std::vector<pollfd> watched;
        for (int fd : idle) watched.push_back(pollfd{fd, POLLIN, 0});
        EXPECT_TRUE(mproc::testing::eventually(
            [&watched] { return ::poll(watched.data(), watched.size(), 0) == static_cast<int>(watched.size()); }))
            << "the listener did not take in the 200 idle peers";

        const auto start = std::chrono::steady_clock::now();
        Connection real = mproc::Client(address, {.authkey = key("k"), .handshake_timeout = 60s});
        real.send(std::string("real client"));
        EXPECT_EQ(real.recv<std::string>(), "real client accepted");
        const auto took = std::chrono::steady_clock::now() - start;
        // Microseconds of work; waiting for an idle peer to leave would take its 60 s.
        EXPECT_LT(took, 20s) << "the real client waited "
                             << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";

        const int server_fds = report.recv<int>();
        const int server_threads = report.recv<int>();
        EXPECT_LE(server_fds, 64 + 16) << "pending peers are capped at 64";
        EXPECT_EQ(server_threads, 1) << "the listener runs its handshakes without threads";
        report.send(0);
        server.join();
        EXPECT_EQ(server.exitcode(), 0);
        for (int fd : idle) ::close(fd);
    }
}

TEST(ConnectionFaults, IdlePeerIsDisconnectedAtTheHandshakeDeadline) {
    mproc::Listener listener({.authkey = key("k"), .handshake_timeout = 150ms});
    RawClient idle(listener.address());
    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(listener.accept(600ms).has_value());
    // The listener sent its challenge, then gave up: the idle peer sees end of file after it.
    Connection view = Connection::from_fd(idle.fd());
    EXPECT_EQ(text(view.recv_bytes()).substr(0, 11), "#CHALLENGE#");
    EXPECT_THROW(view.recv_bytes(), mproc::EOFError);
    view.detach();
    EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
}

TEST(ConnectionFaults, ClientHandshakeTimesOutOnASilentListener) {
    mproc::Listener silent({.authkey = key("k")});  // never inside accept(): never challenges
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(mproc::Client(silent.address(), {.authkey = key("k"), .handshake_timeout = 100ms}),
                 mproc::TimeoutError);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);  // its 100 ms, on a loaded machine
}

// ---- Row 25: listeners that would let anyone in ----

TEST(ConnectionFaults, ListenersThatWouldLetAnyoneInAreRefused) {
    EXPECT_THROW(mproc::Listener({.address = mproc::TcpAddress{"127.0.0.1", 0}}), mproc::UsageError);
    EXPECT_THROW(mproc::Listener({.address = mproc::TcpAddress{"", 0}}), mproc::UsageError);
    EXPECT_THROW(mproc::Listener({.address = std::string("\0abstract", 9)}), mproc::UsageError);
    mproc::Listener unix_listener;
    struct stat st {};
    ASSERT_EQ(::stat(std::get<mproc::UnixAddress>(unix_listener.address()).path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// ---- Interrupted system calls ----

namespace {

// SIGALRM every millisecond, with a handler installed without SA_RESTART, so that blocking
// system calls keep failing with EINTR while it lives.
class SignalStorm {
public:
    SignalStorm() {
        struct sigaction action {};
        action.sa_handler = [](int) {};
        sigemptyset(&action.sa_mask);
        action.sa_flags = 0;
        ::sigaction(SIGALRM, &action, &previous_);
        const itimerval every_millisecond{{0, 1000}, {0, 1000}};
        ::setitimer(ITIMER_REAL, &every_millisecond, nullptr);
    }
    ~SignalStorm() {
        const itimerval off{};
        ::setitimer(ITIMER_REAL, &off, nullptr);
        ::sigaction(SIGALRM, &previous_, nullptr);
    }

private:
    struct sigaction previous_ {};
};

template <class F>
std::chrono::milliseconds elapsed(F&& f) {
    const auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

}  // namespace

TEST(ConnectionFaults, InterruptedCallsAreRetriedWithTheTimeThatRemains) {
    auto [a, b] = mproc::Pipe();
    mproc::Listener listener({.authkey = key("k")});
    SignalStorm storm;
    // Each 150 ms wait ends after 150 ms, never earlier, and is not restarted at each interruption
    // (it would never end): the upper bounds leave room for a loaded machine.
    auto waited = elapsed([&] { EXPECT_FALSE(b.poll(150ms)); });
    EXPECT_GE(waited, 150ms);
    EXPECT_LT(waited, 10s);
    waited = elapsed([&] { EXPECT_TRUE(mproc::connection::wait({&b}, 150ms).empty()); });
    EXPECT_GE(waited, 150ms);
    EXPECT_LT(waited, 10s);
    waited = elapsed([&] { EXPECT_FALSE(listener.accept(150ms).has_value()); });
    EXPECT_GE(waited, 150ms);
    EXPECT_LT(waited, 10s);

    // Reads and writes of a message larger than the socket buffer, interrupted many times.
    std::vector<std::byte> big(4 << 20);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i % 253);
    // Sent once the receiver is blocked, so that the read is interrupted from its start.
    std::thread sender = mproc::testing::act_once_blocked(mproc::testing::this_thread_id(), mproc::testing::wchan::any,
                                                          [&a, &big] { a.send_bytes(big); });
    EXPECT_EQ(b.recv_bytes(), big);
    sender.join();

    // And the challenge.
    auto client = client_async(listener.address(), {.authkey = key("k")});
    Connection server = listener.accept();
    Connection connected = client.get();
    connected.send(7);
    EXPECT_EQ(server.recv<int>(), 7);
}

// ---- Row 30: writing to a closed peer ----

TEST(ConnectionFaults, WritingToAClosedPeerIsAnErrorNeverASignal) {
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    struct sigaction previous {};
    ASSERT_EQ(::sigaction(SIGPIPE, &default_action, &previous), 0);
    const std::vector<std::byte> mebibyte(1 << 20);
    for (const bool duplex : {true, false}) {
        auto [reader, writer] = mproc::Pipe(duplex);
        reader.close();
        try {
            writer.send_bytes(mebibyte);
            ADD_FAILURE() << "no error writing to a closed peer, duplex=" << duplex;
        } catch (const mproc::OSError& e) {
            EXPECT_EQ(e.code(), std::errc::broken_pipe) << e.what();
        }
    }
    sigset_t pending;
    sigemptyset(&pending);
    ::sigpending(&pending);
    EXPECT_FALSE(sigismember(&pending, SIGPIPE)) << "a SIGPIPE was left pending";
    // With SIGPIPE already blocked by the caller, the signal the write raises stays the caller's.
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    sigset_t old_mask;
    ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    {
        auto [reader, writer] = mproc::Pipe(false);
        reader.close();
        EXPECT_THROW(writer.send_bytes("x"), mproc::OSError);
    }
    sigemptyset(&pending);
    ::sigpending(&pending);
    EXPECT_TRUE(sigismember(&pending, SIGPIPE)) << "the caller's own pending SIGPIPE was taken";
    const timespec no_wait{};
    ::sigtimedwait(&block, nullptr, &no_wait);
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    ::sigaction(SIGPIPE, &previous, nullptr);
}

TEST(ConnectionFaults, PeerGoneMidStreamInAChild) {
    auto [parent_end, child_end] = mproc::Pipe();
    mproc::Process child([&child_end] {
        child_end.recv<int>();
        ::_exit(0);  // gone without a word
    });
    child.start();
    child_end.close();
    parent_end.send(1);
    child.join();
    EXPECT_THROW(parent_end.recv<int>(), mproc::EOFError);
    EXPECT_THROW(parent_end.send_bytes(std::vector<std::byte>(1 << 20)), mproc::OSError);
}
