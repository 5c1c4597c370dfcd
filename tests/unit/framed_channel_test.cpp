// transport::FramedChannel, the one framed channel under Connection, the manager's wire and the
// pool's worker channels: frames cut into pieces on the way in and out, a full socket buffer, the
// long form of the length, the length limit, end of file inside a frame, and a peer that has gone.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mproc/errors.hpp"
#include "transport/fd_io.hpp"
#include "transport/framed_channel.hpp"

namespace {

using mproc::detail::Deadline;
using mproc::detail::UniqueFd;
using mproc::transport::FramedChannel;

struct SocketPair {
    UniqueFd a;
    UniqueFd b;
    SocketPair() {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw mproc::OSError("socketpair", errno);
        a.reset(fds[0]);
        b.reset(fds[1]);
    }
};

std::vector<std::byte> bytes_of(std::string_view text) {
    const auto* p = reinterpret_cast<const std::byte*>(text.data());
    return {p, p + text.size()};
}

std::string text_of(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

void write_raw(int fd, std::span<const std::byte> bytes) {
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

// A frame's bytes as they travel: the header, then the payload.
std::vector<std::byte> framed(std::string_view payload) {
    const mproc::transport::FrameHeader header = mproc::transport::encode_frame_header(payload.size());
    std::vector<std::byte> out(header.view().begin(), header.view().end());
    const auto body = bytes_of(payload);
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

TEST(FramedChannel, FramesArrivingByteByByteCompleteOnlyWhenWhole) {
    SocketPair pair;
    mproc::transport::set_nonblocking(pair.b.get(), true);
    FramedChannel reader = FramedChannel::borrowing(pair.b.get());
    std::vector<std::byte> wire = framed("first message");
    const std::vector<std::byte> second = framed("second");
    wire.insert(wire.end(), second.begin(), second.end());

    // All but the last byte, one write each: no frame is complete before the first frame's last.
    const std::size_t first_size = wire.size() - second.size();
    for (std::size_t i = 0; i + 1 < first_size; ++i) {
        write_raw(pair.a.get(), std::span(wire).subspan(i, 1));
        ASSERT_EQ(reader.read_available(), FramedChannel::Read::data);
        EXPECT_FALSE(reader.next_frame().has_value()) << "after " << i + 1 << " bytes";
    }
    EXPECT_EQ(reader.read_available(), FramedChannel::Read::would_block);
    // The rest in one write: the first frame completes, and the second comes with it.
    write_raw(pair.a.get(), std::span(wire).subspan(first_size - 1));
    ASSERT_EQ(reader.read_available(), FramedChannel::Read::data);
    auto one = reader.next_frame();
    ASSERT_TRUE(one.has_value());
    EXPECT_EQ(text_of(*one), "first message");
    auto two = reader.next_frame();
    ASSERT_TRUE(two.has_value());
    EXPECT_EQ(text_of(*two), "second");
    EXPECT_TRUE(reader.input_empty());
    EXPECT_FALSE(reader.next_frame().has_value());
}

TEST(FramedChannel, FullSocketBufferWouldBlockThenFlushCompletes) {
    SocketPair pair;
    const int small = 4096;
    ASSERT_EQ(::setsockopt(pair.a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    mproc::transport::set_nonblocking(pair.a.get(), true);
    mproc::transport::set_nonblocking(pair.b.get(), true);
    FramedChannel writer(std::move(pair.a));
    FramedChannel reader = FramedChannel::borrowing(pair.b.get());

    // Several frames, built in place and appended, far more than the socket holds.
    std::vector<std::string> sent;
    for (int i = 0; i < 8; ++i) sent.push_back(std::string(256 * 1024, static_cast<char>('a' + i)));
    for (std::size_t i = 0; i < sent.size(); ++i) {
        if (i % 2 == 0) {
            writer.append_frame(bytes_of(sent[i]));
        } else {
            const std::size_t mark = writer.begin_frame();
            const auto body = bytes_of(sent[i]);
            writer.output().insert(writer.output().end(), body.begin(), body.end());
            writer.end_frame(mark);
        }
    }
    ASSERT_EQ(writer.flush(), FramedChannel::Flush::would_block);
    EXPECT_TRUE(writer.output_pending());

    // The reader drains, the writer goes on from where it stopped, until all has left.
    std::vector<std::string> received;
    int would_block = 0;
    for (;;) {
        const FramedChannel::Flush state = writer.flush();
        ASSERT_NE(state, FramedChannel::Flush::closed);
        if (state == FramedChannel::Flush::would_block) ++would_block;
        while (reader.read_available() == FramedChannel::Read::data) {
        }
        while (auto frame = reader.next_frame()) received.push_back(text_of(*frame));
        if (state == FramedChannel::Flush::done && received.size() == sent.size()) break;
        ASSERT_LT(would_block, 100000);
    }
    EXPECT_GT(would_block, 1);
    EXPECT_FALSE(writer.output_pending());
    EXPECT_EQ(received, sent);
}

TEST(FramedChannel, BlockingSendWaitsOutPartialWrites) {
    SocketPair pair;
    mproc::transport::set_nonblocking(pair.a.get(), true);  // the writer must wait for room itself
    FramedChannel writer(std::move(pair.a));
    FramedChannel reader(std::move(pair.b));
    const std::string big(8 << 20, 'x');
    std::string got;
    std::thread receiving([&] { got = text_of(reader.recv(Deadline::after(std::chrono::seconds(60)))); });
    std::size_t written = 0;
    writer.send(bytes_of(big), Deadline::after(std::chrono::seconds(60)), written);
    receiving.join();
    EXPECT_EQ(written, big.size() + 4);
    EXPECT_EQ(got, big);
}

TEST(FramedChannel, LongFormHeaderIsReadForAnyLength) {
    // The 12-byte form: -1, then the length as 8 big-endian bytes. Python writes it for more than
    // 0x7fffffff bytes and reads it for any length.
    const auto header = mproc::transport::encode_frame_header(0x80000000ull);
    ASSERT_EQ(header.size, 12u);
    const unsigned char expected[12] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0};
    EXPECT_EQ(std::memcmp(header.bytes.data(), expected, 12), 0);

    SocketPair pair;
    FramedChannel reader(std::move(pair.b));
    const unsigned char wire[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    write_raw(pair.a.get(), std::as_bytes(std::span(wire)));
    EXPECT_EQ(text_of(reader.recv()), "hello");
}

// Writes `wire` to the peer of a fresh channel with `limit`, closes the peer after it when
// `then_close`, and expects recv() to refuse what came with ProtocolError("<message>...").
void expect_refused(std::vector<unsigned char> wire, bool then_close, std::size_t limit, std::string_view message) {
    SocketPair pair;
    FramedChannel reader(std::move(pair.b), limit);
    write_raw(pair.a.get(), std::as_bytes(std::span(wire)));
    if (then_close) pair.a.reset();
    try {
        reader.recv(Deadline::after(std::chrono::seconds(60)));
        ADD_FAILURE() << "no ProtocolError for " << message;
    } catch (const mproc::ProtocolError& e) {
        EXPECT_EQ(std::string_view(e.what()).substr(0, message.size()), message);
    }
}

TEST(FramedChannel, LengthOverTheLimitIsRefusedBeforeThePayload) {
    // Only the header, and the peer still there: the refusal must not wait for the 11 bytes.
    expect_refused({0, 0, 0, 11}, false, 10, "bad message length 11 (the limit is 10)");
}

TEST(FramedChannel, NegativeLengthOtherThanTheLongFormMarkerIsRefused) {
    expect_refused({0xff, 0xff, 0xff, 0xf0}, false, mproc::transport::kNoMessageLimit, "bad message length -16 (");
}

TEST(FramedChannel, EndOfFileInsideAFrameNamesWhere) {
    expect_refused({0, 0, 0, 100, 'a', 'b', 'c'}, true, mproc::transport::kNoMessageLimit,
                   "got end of file during message (7 bytes of an unfinished frame)");
    expect_refused({0, 0}, true, mproc::transport::kNoMessageLimit,
                   "got end of file during message (in the length prefix)");
    // At a frame boundary it is a clean end: EOFError, after the frames that came before.
    SocketPair pair;
    FramedChannel reader(std::move(pair.b));
    write_raw(pair.a.get(), framed("last"));
    pair.a.reset();
    EXPECT_EQ(text_of(reader.recv()), "last");
    EXPECT_THROW(reader.recv(), mproc::EOFError);
}

TEST(FramedChannel, ExactReadsNeverTakeTheNextFrame) {
    SocketPair pair;
    FramedChannel reader = FramedChannel::borrowing(pair.b.get());
    std::vector<std::byte> wire = framed("one");
    const std::vector<std::byte> next = framed("two");
    wire.insert(wire.end(), next.begin(), next.end());
    write_raw(pair.a.get(), wire);
    std::byte first[7];
    ASSERT_EQ(reader.read_full(first), 7u);
    EXPECT_EQ(text_of(std::span(first).subspan(4)), "one");
    // The second frame is still on the descriptor, for whoever reads it next.
    FramedChannel other = FramedChannel::borrowing(pair.b.get());
    EXPECT_EQ(text_of(other.recv()), "two");
}

TEST(FramedChannel, ReceiveTimesOutAtTheDeadline) {
    SocketPair pair;
    FramedChannel reader(std::move(pair.b));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(reader.recv(Deadline::after(std::chrono::milliseconds(20))), mproc::TimeoutError);
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(20));
}

TEST(FramedChannel, ClosedPeerIsEpipeNotSigpipe) {
    // SIGPIPE at its default would end this process: the writes must not raise it.
    struct sigaction previous {};
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &default_action, &previous);

    // A pipe (write(2), not send(2) with MSG_NOSIGNAL) whose reader is gone.
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    UniqueFd read_end(fds[0]);
    FramedChannel pipe_writer{UniqueFd(fds[1])};
    read_end.reset();
    std::size_t written = 0;
    try {
        pipe_writer.send(bytes_of("anyone?"), Deadline::never(), written);
        ADD_FAILURE() << "no OSError";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code().value(), EPIPE);
    }
    EXPECT_EQ(written, 0u);

    // A socket whose peer is gone: flush() says closed and keeps what it could not send.
    SocketPair pair;
    FramedChannel socket_writer(std::move(pair.a));
    pair.b.reset();
    socket_writer.append_frame(bytes_of("anyone?"));
    EXPECT_EQ(socket_writer.flush(), FramedChannel::Flush::closed);
    EXPECT_TRUE(socket_writer.output_pending());
    EXPECT_FALSE(socket_writer.flush_all());

    sigset_t pending;
    sigpending(&pending);
    EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
    ::sigaction(SIGPIPE, &previous, nullptr);
}

TEST(FramedChannel, AnOwnedDescriptorClosesWithTheChannel) {
    SocketPair pair;
    FramedChannel reader = FramedChannel::borrowing(pair.b.get());
    { FramedChannel owner(std::move(pair.a)); }
    EXPECT_THROW(reader.recv(Deadline::after(std::chrono::seconds(60))), mproc::EOFError);
}

}  // namespace
