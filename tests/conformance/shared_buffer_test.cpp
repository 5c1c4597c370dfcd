// SharedBuffer (shared_buffer.hpp): buffers handed over through a Queue and a Pipe once per start
// method, alone and inside a vector and a struct, the sender's handle after the handover, a 64 MiB
// buffer, a receiver killed while it holds one and a sender killed after putting one (nothing left
// in /dev/shm either way), the keepers of a buffer in transit, sweeps during handovers; messages
// that name no buffer, a gone one, one received already, or one of another size; a put or send
// that fails (the buffer stays with its sender); inherited handles; a sweep that meets a locked
// header or a buffer shaped like a segment; a receiver out of descriptors; a full /dev/shm.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/context.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_buffer.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/synchronize.hpp"

using namespace std::chrono_literals;
using mproc::SharedBuffer;
using mproc::StartMethod;

namespace {

constexpr std::size_t kOddSize = (std::size_t{1} << 20) + 13;  // not a whole number of pages or words
constexpr std::size_t kLargeSize = std::size_t{64} << 20;

// The byte at `i` of a buffer filled with `seed`: a pattern that a shifted, truncated or stale
// copy does not match.
std::byte pattern_byte(std::size_t i, std::uint64_t seed) {
    const std::uint64_t x = (i / 8 + 1) * 0x9e3779b97f4a7c15ULL ^ seed;
    return static_cast<std::byte>(x >> (8 * (i % 8)));
}

void fill(const SharedBuffer& buffer, std::uint64_t seed) {
    const auto bytes = buffer.span();
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = pattern_byte(i, seed);
}

// The offset of the first byte that differs from the pattern, or the size when none does.
std::size_t first_difference(const SharedBuffer& buffer, std::uint64_t seed) {
    const auto bytes = buffer.span();
    for (std::size_t i = 0; i < bytes.size(); ++i)
        if (bytes[i] != pattern_byte(i, seed)) return i;
    return bytes.size();
}

// In a child: fails the process (exit code 1, with the reason on stderr) unless `buffer` holds
// `size` bytes of the pattern of `seed`.
void require_pattern(const SharedBuffer& buffer, std::size_t size, std::uint64_t seed) {
    if (buffer.size() != size)
        throw std::runtime_error("received " + std::to_string(buffer.size()) + " bytes, expected " +
                                 std::to_string(size));
    if (const std::size_t at = first_difference(buffer, seed); at != size)
        throw std::runtime_error("received bytes differ at offset " + std::to_string(at));
}

void require_empty_after_handover(const SharedBuffer& buffer) {
    if (buffer || buffer.data() != nullptr || buffer.size() != 0 || !buffer.name().empty())
        throw std::runtime_error("the sender's handle is not empty after the handover");
}

class SharedBufferHandover : public mproc::testing::PerStartMethodTest {
protected:
    SharedBufferHandover() : PerStartMethodTest("a shared buffer test") {}
};

class SharedBufferMessages : public mproc::testing::LeakCheckedTest {
protected:
    SharedBufferMessages() : LeakCheckedTest("a shared buffer test", false) {}
};

// ---- children ---------------------------------------------------------------------------------

void put_filled(mproc::Queue<SharedBuffer> q, std::size_t size, std::uint64_t seed) {
    SharedBuffer buffer(size);
    fill(buffer, seed);
    q.put(buffer);
    require_empty_after_handover(buffer);
}

void get_and_check(mproc::Queue<SharedBuffer> q, std::size_t size, std::uint64_t seed) {
    require_pattern(q.get(true, 20s), size, seed);
}

// Receives a buffer with a label, checks it, and sends back a new pattern in the same memory.
void answer_on_pipe(mproc::Connection conn, std::uint64_t seed, std::uint64_t reply_seed) {
    auto [label, buffer] = conn.recv<std::tuple<std::string, SharedBuffer>>();
    if (label != "request") throw std::runtime_error("label " + label);
    require_pattern(buffer, kOddSize, seed);
    fill(buffer, reply_seed);
    conn.send(std::tuple<std::string, SharedBuffer>{"reply", std::move(buffer)});
}

void get_and_hold(mproc::Queue<SharedBuffer> q, mproc::Queue<std::string> names) {
    SharedBuffer buffer = q.get(true, 20s);
    names.put(buffer.name());
    for (;;) ::pause();
}

void put_and_wait(mproc::Queue<SharedBuffer> q, std::uint64_t seed, mproc::Event put_done) {
    SharedBuffer buffer(kOddSize);
    fill(buffer, seed);
    q.put(buffer);  // a bounded queue: put() returns once the message is in the shared ring
    put_done.set();
    for (;;) ::pause();
}

// Leaves the process owning a buffer it never drops; the process's end removes it.
void create_and_leak(mproc::Queue<std::string> names) {
    auto* leaked = new SharedBuffer(4096);
    names.put(leaked->name());
}

}  // namespace

TEST_P(SharedBufferHandover, ThroughAQueueFromChildToParent) {
    mproc::Queue<SharedBuffer> q;
    auto child = started(put_filled, q, kOddSize, std::uint64_t{11});
    SharedBuffer received = q.get(true, 20s);
    EXPECT_EQ(joined(child), 0) << "the sender's checks failed";
    ASSERT_EQ(received.size(), kOddSize);
    EXPECT_EQ(first_difference(received, 11), kOddSize);
    const std::string name = received.name();
    EXPECT_TRUE(mproc::testing::shm_exists(name)) << "gone while its receiver holds it";
    received.release();
    EXPECT_FALSE(mproc::testing::shm_exists(name)) << "still there after its owner dropped it";
}

TEST_P(SharedBufferHandover, ThroughAQueueFromParentToChild) {
    mproc::Queue<SharedBuffer> q;
    SharedBuffer buffer(kOddSize);
    fill(buffer, 12);
    const std::string name = buffer.name();
    q.put(buffer);
    EXPECT_FALSE(buffer);
    EXPECT_EQ(buffer.data(), nullptr);
    EXPECT_EQ(buffer.size(), 0u);
    EXPECT_THROW((void)buffer.span(), mproc::UsageError);
    EXPECT_THROW(q.put(buffer), mproc::UsageError) << "an emptied handle handed over twice";
    auto child = started(get_and_check, q, kOddSize, std::uint64_t{12});
    EXPECT_EQ(joined(child), 0) << "the receiver's checks failed";
    EXPECT_FALSE(mproc::testing::shm_exists(name)) << "the receiver ended without removing it";
}

TEST_P(SharedBufferHandover, ThroughAPipeInsideATupleAndBack) {
    auto [parent_end, child_end] = mproc::Pipe();
    auto child = started(answer_on_pipe, child_end, std::uint64_t{21}, std::uint64_t{22});
    child_end.close();
    SharedBuffer buffer(kOddSize);
    fill(buffer, 21);
    const std::string name = buffer.name();
    parent_end.send(std::tuple<std::string, SharedBuffer>{"request", std::move(buffer)});
    auto [label, reply] = parent_end.recv<std::tuple<std::string, SharedBuffer>>();
    EXPECT_EQ(joined(child), 0) << "the child's checks failed";
    EXPECT_EQ(label, "reply");
    EXPECT_EQ(reply.name(), name) << "the same memory comes back";
    ASSERT_EQ(reply.size(), kOddSize);
    EXPECT_EQ(first_difference(reply, 22), kOddSize) << "the child's writes are not there";
    reply.release();
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

// The sender ends (normally) before anyone got its buffer: its exit leaves the buffer in transit,
// kept by its parent, until the parent takes it.
TEST_P(SharedBufferHandover, ASenderThatEndedFirstStillDelivers) {
    mproc::Queue<SharedBuffer> q;
    auto child = started(put_filled, q, kOddSize, std::uint64_t{13});
    EXPECT_EQ(joined(child), 0) << "the sender's checks failed";
    (void)mproc::sweep_shared_memory();  // must leave the buffer in transit: the get() below needs it
    SharedBuffer received = q.get(true, 20s);
    ASSERT_EQ(received.size(), kOddSize);
    EXPECT_EQ(first_difference(received, 13), kOddSize);
}

// An owner that never drops its buffer: its end removes it, with no sweep by anyone else.
TEST_P(SharedBufferHandover, AnOwnersEndRemovesWhatItNeverDropped) {
    mproc::Queue<std::string> names;
    auto child = started(create_and_leak, names);
    const std::string name = names.get(true, 20s);
    EXPECT_EQ(joined(child), 0);
    EXPECT_FALSE(mproc::testing::shm_exists(name)) << "left by an owner that ended";
}

TEST_P(SharedBufferHandover, SixtyFourMebibytes) {
    mproc::Queue<SharedBuffer> q;
    SharedBuffer buffer(kLargeSize);
    fill(buffer, 31);
    q.put(buffer);
    auto child = started(get_and_check, q, kLargeSize, std::uint64_t{31});
    EXPECT_EQ(joined(child, 60s), 0) << "the receiver's checks failed";
}

// The receiver dies (SIGKILL) holding the buffer: its death frees it at the next sweep.
TEST_P(SharedBufferHandover, ReceiverKilledWhileHoldingLeavesNothing) {
    mproc::Queue<SharedBuffer> q;
    mproc::Queue<std::string> names;
    auto child = started(get_and_hold, q, names);
    SharedBuffer buffer(kOddSize);
    q.put(buffer);
    const std::string name = names.get(true, 20s);  // the child holds it now
    (void)mproc::sweep_shared_memory();
    EXPECT_TRUE(mproc::testing::shm_exists(name)) << "a sweep removed a buffer while its owner lives";
    child.kill();
    child.join();
    (void)mproc::sweep_shared_memory();
    EXPECT_FALSE(mproc::testing::shm_exists(name)) << "left after its owner was killed";
}

// The sender dies (SIGKILL) right after the put: the buffer is in transit, kept by the sender's
// parent, and arrives intact; once its receiver drops it nothing is left.
TEST_P(SharedBufferHandover, SenderKilledAfterPutStillDelivers) {
    mproc::Queue<SharedBuffer> q(1);
    mproc::Event put_done;
    auto child = started(put_and_wait, q, std::uint64_t{41}, put_done);
    ASSERT_TRUE(put_done.wait(20s));
    child.kill();
    child.join();
    (void)mproc::sweep_shared_memory();  // must leave the buffer in transit: the get() below needs it
    SharedBuffer received = q.get(true, 20s);
    ASSERT_EQ(received.size(), kOddSize);
    EXPECT_EQ(first_difference(received, 41), kOddSize);
    const std::string name = received.name();
    received.release();
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

INSTANTIATE_TEST_SUITE_P(StartMethods, SharedBufferHandover,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         mproc::testing::start_method_name);

// ---- within one process: the handle, and messages that do not name a buffer to take ------------

namespace {

using Handover = std::tuple<std::string, std::uint64_t, std::uint64_t, std::uint64_t>;  // the wire's fields

template <class F>
std::string decode_error_of(F f) {
    try {
        f();
    } catch (const mproc::DecodeError& e) {
        return e.what();
    }
    return "(no DecodeError)";
}

}  // namespace

TEST_F(SharedBufferMessages, HandleBasics) {
    EXPECT_THROW(SharedBuffer(0), mproc::UsageError);
    EXPECT_THROW(SharedBuffer(std::size_t{1} << 50), mproc::OSError);
    SharedBuffer empty;
    EXPECT_FALSE(empty);
    EXPECT_THROW((void)empty.span(), mproc::UsageError);
    EXPECT_THROW((void)mproc::dumps(empty), mproc::UsageError);
    SharedBuffer buffer(100);
    EXPECT_EQ(buffer.size(), 100u);
    EXPECT_EQ(buffer.span().size(), 100u);
    EXPECT_EQ(buffer.span()[99], std::byte{0}) << "not zero-filled";
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % 4096, 0u) << "not page aligned";
    const std::string name = buffer.name();
    EXPECT_EQ(name.rfind("psb_", 0), 0u);
    SharedBuffer moved = std::move(buffer);
    EXPECT_FALSE(buffer);
    EXPECT_EQ(moved.name(), name);
    moved.release();
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

// A forked child can use its parent's memory but cannot hand it over: the parent owns it.
TEST_F(SharedBufferMessages, AnInheritedHandleIsNotTheChildsToHandOver) {
    SharedBuffer buffer(64);
    buffer.span()[0] = std::byte{5};
    auto child = mproc::fork_context.Process([&buffer] {
        if (buffer.span()[0] != std::byte{5}) throw std::runtime_error("the inherited mapping does not show the bytes");
        try {
            (void)mproc::dumps(buffer);
        } catch (const mproc::UsageError&) {
            return;
        }
        throw std::runtime_error("the child handed over its parent's buffer");
    });
    child.start();
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
    EXPECT_TRUE(buffer) << "the child's attempt changed the parent's handle";
    auto bytes = mproc::dumps(buffer);  // the parent still owns it
    EXPECT_EQ(mproc::loads<SharedBuffer>(bytes).span()[0], std::byte{5});
}

TEST_F(SharedBufferMessages, MalformedNamesAreRefused) {
    for (const std::string name :
         {"../../etc/passwd", "psm_0123456789abcdef", "psb_0123", "psb_0123456789ABCDEF", ""}) {
        const auto bytes = mproc::dumps(Handover{name, 1, 1, 8});
        const std::string error = decode_error_of([&] { (void)mproc::loads<SharedBuffer>(bytes); });
        EXPECT_NE(error.find("malformed SharedBuffer: '" + name + "' is not a shared buffer's name"), std::string::npos)
            << error;
    }
    const auto bytes = mproc::dumps(Handover{"psb_0123456789abcdef", 1, 1, 8});
    const auto truncated = std::span(bytes).first(bytes.size() - 3);
    EXPECT_NE(decode_error_of([&] { (void)mproc::loads<SharedBuffer>(truncated); }).find("truncated"),
              std::string::npos);
}

TEST_F(SharedBufferMessages, ABufferThatNoLongerExists) {
    const auto bytes = mproc::dumps(Handover{"psb_00000000deadbeef", 1, 1, 8});
    EXPECT_EQ(decode_error_of([&] { (void)mproc::loads<SharedBuffer>(bytes); }),
              "mproc codec: shared buffer 'psb_00000000deadbeef' no longer exists (received already, dropped, or "
              "removed after its sender and the sender's parent ended)");
    SharedBuffer buffer(10);
    const auto message = mproc::dumps(buffer);
    mproc::loads<SharedBuffer>(message).release();  // received and dropped
    EXPECT_NE(decode_error_of([&] { (void)mproc::loads<SharedBuffer>(message); }).find("no longer exists"),
              std::string::npos);
}

TEST_F(SharedBufferMessages, AMessageDecodesOnce) {
    SharedBuffer buffer(10);
    const auto message = mproc::dumps(buffer);
    SharedBuffer received = mproc::loads<SharedBuffer>(message);
    EXPECT_EQ(decode_error_of([&] { (void)mproc::loads<SharedBuffer>(message); }),
              "mproc codec: shared buffer '" + received.name() +
                  "' was received already (a message can be decoded once)");
    EXPECT_TRUE(received) << "the refused second decode took the buffer from its receiver";
}

TEST_F(SharedBufferMessages, WrongSizeOrAnotherSegment) {
    SharedBuffer buffer(5000);
    const std::string name = buffer.name();
    const auto message = mproc::dumps(buffer);
    auto [wire_name, id, ticket, size] = mproc::loads<Handover>(message);
    EXPECT_EQ(wire_name, name);
    EXPECT_EQ(size, 5000u);
    const auto decoded = [](const Handover& handover) {
        return decode_error_of([&] { (void)mproc::loads<SharedBuffer>(mproc::dumps(handover)); });
    };
    EXPECT_EQ(decoded(Handover{name, id, ticket, 4096}),
              "mproc codec: shared buffer '" + name + "' holds 5000 bytes, the message says 4096");
    EXPECT_EQ(decoded(Handover{name, id, ticket, 0}),
              "mproc codec: shared buffer '" + name + "' cannot hold the 0 bytes the message says");
    EXPECT_EQ(decoded(Handover{name, id + 1, ticket, 5000}),
              "mproc codec: shared buffer '" + name +
                  "' is not the one the message names (another buffer of that name)");
    // The refusals left it in transit: the real message still takes it over.
    SharedBuffer received = mproc::loads<SharedBuffer>(message);
    EXPECT_EQ(received.size(), 5000u);
}

// A message never decoded: the buffer stays while its sender lives (here, this process); the test
// below shows it go once the sender and its parent have ended.
TEST_F(SharedBufferMessages, InTransitIsKeptWhileItsSenderLives) {
    SharedBuffer buffer(10);
    const std::string name = buffer.name();
    const auto message = mproc::dumps(buffer);
    (void)mproc::sweep_shared_memory();
    EXPECT_TRUE(mproc::testing::shm_exists(name)) << "a sweep removed a buffer whose sender lives";
    mproc::loads<SharedBuffer>(message).release();
    EXPECT_FALSE(mproc::testing::shm_exists(name));
}

// The same refusals reach a receiver through a pipe (which then closes the connection, as for
// any message that does not decode).
TEST_F(SharedBufferMessages, AForgedMessageOnAPipe) {
    const std::pair<Handover, std::string> forged[] = {
        {Handover{"psb_00000000deadbeef", 1, 1, 8}, "shared buffer 'psb_00000000deadbeef' no longer exists"},
        {Handover{"/dev/shm/psm_x", 1, 1, 8}, "malformed SharedBuffer: '/dev/shm/psm_x'"},
    };
    for (const auto& [message, cause] : forged) {
        auto [sender, receiver] = mproc::Pipe();
        sender.send_bytes(mproc::dumps(message));
        const std::string error = decode_error_of([&] { (void)receiver.recv<SharedBuffer>(); });
        EXPECT_NE(error.find(cause), std::string::npos) << error;
        EXPECT_TRUE(receiver.closed()) << "a message that does not decode leaves the connection open";
    }
}

// ---- a handover that fails keeps the buffer with its sender -------------------------------------

namespace {

// The buffer is this process's again: it can be written, handed over and received intact.
void expect_still_owned(SharedBuffer& buffer, std::size_t size, std::uint64_t seed) {
    ASSERT_TRUE(buffer) << "the failed handover emptied the handle";
    ASSERT_EQ(buffer.size(), size);
    EXPECT_EQ(first_difference(buffer, seed), size);
    const std::string name = buffer.name();
    SharedBuffer received = mproc::loads<SharedBuffer>(mproc::dumps(buffer));
    EXPECT_FALSE(buffer);
    EXPECT_EQ(received.name(), name);
    EXPECT_EQ(first_difference(received, seed), size);
    received.release();
    EXPECT_FALSE(mproc::testing::shm_exists(name)) << "left after its owner dropped it";
}

}  // namespace

TEST_F(SharedBufferMessages, APutThatRaisesFullKeepsTheBuffer) {
    mproc::Queue<SharedBuffer> q(1);
    SharedBuffer first(16);
    q.put(first);
    SharedBuffer buffer(kOddSize);
    fill(buffer, 51);
    EXPECT_THROW(q.put_nowait(buffer), mproc::Full);
    EXPECT_THROW(q.put(buffer, true, 10ms), mproc::Full);
    expect_still_owned(buffer, kOddSize, 51);
    SharedBuffer again(kOddSize);
    fill(again, 52);
    (void)q.get(true, 20s);
    q.put(again);  // after a Full, the queue takes the next put
    EXPECT_EQ(first_difference(q.get(true, 20s), 52), kOddSize);
}

TEST_F(SharedBufferMessages, ASendThatRaisesEpipeKeepsTheBuffer) {
    auto [receiver, sender] = mproc::Pipe(false);
    receiver.close();
    SharedBuffer buffer(kOddSize);
    fill(buffer, 53);
    try {
        sender.send(buffer);
        ADD_FAILURE() << "send() on a pipe whose reader is closed did not raise";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code().value(), EPIPE) << e.what();
    }
    expect_still_owned(buffer, kOddSize, 53);
}

// The second element cannot be handed over: the first, handed over already, comes back.
TEST_F(SharedBufferMessages, AValueThatFailsHalfEncodedKeepsItsBuffers) {
    std::vector<SharedBuffer> buffers;
    buffers.emplace_back(kOddSize);
    buffers.emplace_back();
    fill(buffers[0], 54);
    EXPECT_THROW((void)mproc::dumps(buffers), mproc::UsageError);
    expect_still_owned(buffers[0], kOddSize, 54);
}

// A forked child inherits a handle, then receives the same buffer through a queue: the process
// owns the buffer again, but the inherited handle still does not.
TEST_F(SharedBufferMessages, AnInheritedHandleStaysForeignWhenItsBufferComesBack) {
    mproc::Queue<SharedBuffer> q;
    mproc::Queue<std::string> verdict;
    SharedBuffer buffer(kOddSize);
    fill(buffer, 55);
    auto child = mproc::fork_context.Process([&buffer, q, verdict]() mutable {
        SharedBuffer received = q.get(true, 20s);
        try {
            (void)mproc::dumps(buffer);
            verdict.put("the inherited handle was handed over");
            return;
        } catch (const mproc::UsageError&) {
        }
        buffer.release();
        if (!mproc::testing::shm_exists(received.name())) {
            verdict.put("dropping the inherited handle removed the received buffer");
            return;
        }
        verdict.put(first_difference(received, 55) == kOddSize ? "ok" : "the received bytes differ");
    });
    child.start();
    q.put(buffer);
    EXPECT_EQ(verdict.get(true, 20s), "ok");
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

// SharedMemory and SharedBuffer do not read each other's files: SharedMemory refuses a buffer's
// name, and its sweep leaves a buffer alone even when the buffer's last bytes hold a trailer whose
// processes have all ended.
TEST_F(SharedBufferMessages, TheSharedMemorySweepLeavesBuffersAlone) {
    constexpr std::size_t kTrailer = 8192;
    try {
        mproc::SharedMemory impostor({.name = "psb_0123456789abcdef", .create = true, .size = 4096});
        ADD_FAILURE() << "a SharedMemory took a buffer's name";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code().value(), EINVAL) << e.what();
    }
    // A trailer of a segment whose creator has ended: a copy of it, taken while the segment lived.
    mproc::Queue<std::string> trailer_text;
    auto child = mproc::fork_context.Process([trailer_text]() mutable {
        mproc::SharedMemory segment({.create = true, .size = 4096});
        std::ifstream file("/dev/shm/" + segment.name(), std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        trailer_text.put(bytes.substr(bytes.size() - kTrailer));
        segment.unlink();
    });
    child.start();
    const std::string trailer = trailer_text.get(true, 20s);
    child.join();
    ASSERT_EQ(trailer.size(), kTrailer);
    // A buffer's file of the segment's size (a header page, then data): the trailer fits its end.
    SharedBuffer buffer(kTrailer);
    std::memcpy(buffer.data(), trailer.data(), kTrailer);
    (void)mproc::sweep_shared_memory();
    EXPECT_TRUE(mproc::testing::shm_exists(buffer.name())) << "the SharedMemory sweep removed a live buffer";
}

// A process that holds a buffer's header lock and never lets go (stopped, or stuck) does not stall
// the sweeps: they skip that buffer. Once the holder dies, the next sweep removes the buffer.
TEST_F(SharedBufferMessages, ASweepSkipsABufferWhoseHeaderIsLocked) {
    constexpr std::size_t kHeaderLockOffset = 32;  // magic, version, header size, data size, segment id
    mproc::Queue<std::string> names;
    auto owner = mproc::fork_context.Process([names]() mutable {
        SharedBuffer buffer(4096);
        names.put(buffer.name());
        for (;;) ::pause();
    });
    owner.start();
    const std::string name = names.get(true, 20s);
    mproc::Event locked;
    auto holder = mproc::fork_context.Process([name, locked]() mutable {
        const int fd = ::open(("/dev/shm/" + name).c_str(), O_RDWR);
        void* header = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (fd < 0 || header == MAP_FAILED) throw std::runtime_error("cannot map the buffer's header");
        ::pthread_mutex_lock(reinterpret_cast<pthread_mutex_t*>(static_cast<char*>(header) + kHeaderLockOffset));
        locked.set();
        for (;;) ::pause();
    });
    holder.start();
    ASSERT_TRUE(locked.wait(20s));
    owner.kill();  // the buffer is abandoned now, its header locked by `holder`
    owner.join();
    auto sweeper = mproc::fork_context.Process([] { (void)mproc::sweep_shared_memory(); });
    sweeper.start();
    sweeper.join(20s);
    EXPECT_FALSE(sweeper.is_alive()) << "a sweep waits for a header lock that its holder never releases";
    if (sweeper.is_alive()) sweeper.kill();
    sweeper.join();
    EXPECT_TRUE(mproc::testing::shm_exists(name)) << "a sweep removed a buffer whose header was locked";
    holder.kill();  // dies holding the robust lock: the next sweep takes it over (EOWNERDEAD)
    holder.join();
    (void)mproc::sweep_shared_memory();
    EXPECT_FALSE(mproc::testing::shm_exists(name)) << "left after its owner died";
}

// A receiver out of descriptors gets an OSError (its own limit, not a bad message), and the buffer
// stays in transit: once descriptors are free again, the same message takes it over.
TEST_F(SharedBufferMessages, AReceiverOutOfDescriptorsGetsOSErrorAndTheBufferWaits) {
    SharedBuffer buffer(kOddSize);
    fill(buffer, 56);
    const auto message = mproc::dumps(buffer);
    auto receiver = mproc::fork_context.Process([&message] {
        const rlimit low{64, 64};
        if (::setrlimit(RLIMIT_NOFILE, &low) != 0) throw std::runtime_error("setrlimit");
        std::vector<int> taken;
        for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) taken.push_back(fd);
        // The descriptors go back before the error is looked at: UndefinedBehaviorSanitizer's
        // check of a caller's object needs one of its own.
        std::exception_ptr error;
        try {
            (void)mproc::loads<SharedBuffer>(message);
        } catch (...) {
            error = std::current_exception();
        }
        for (const int fd : taken) ::close(fd);
        if (!error) throw std::runtime_error("received a buffer with no descriptor free");
        try {
            std::rethrow_exception(error);
        } catch (const mproc::OSError& e) {
            if (e.code().value() != EMFILE) throw;
        }
        require_pattern(mproc::loads<SharedBuffer>(message), kOddSize, 56);
    });
    receiver.start();
    receiver.join();
    EXPECT_EQ(receiver.exitcode(), 0);
}

// More than /dev/shm can hold: OSError ENOSPC at creation (not a SIGBUS at the first write), and
// no file left behind, under its name or a temporary one.
TEST_F(SharedBufferMessages, MoreThanDevShmHoldsIsENOSPC) {
    struct statvfs fs {};
    ASSERT_EQ(::statvfs("/dev/shm", &fs), 0);
    const std::size_t too_much = static_cast<std::size_t>(fs.f_blocks) * fs.f_frsize + (std::size_t{1} << 20);
    const auto files_before = mproc::testing::shm_entries();
    try {
        SharedBuffer buffer(too_much);
        ADD_FAILURE() << "created a buffer of " << too_much << " bytes";
    } catch (const mproc::OSError& e) {
        EXPECT_EQ(e.code().value(), ENOSPC) << e.what();
    }
    EXPECT_TRUE(mproc::testing::new_shm_entries(files_before).empty()) << "a failed creation left a file";
}

namespace {

// A struct that carries a buffer among other members.
struct Frame {
    std::string label;
    SharedBuffer pixels;
    std::uint32_t number = 0;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(label, pixels, number);
    }
};

}  // namespace

namespace {

void put_unread(mproc::Queue<SharedBuffer> unread, mproc::Queue<std::string> names) {
    SharedBuffer buffer(4096);
    names.put(buffer.name());
    unread.put(buffer);
}

void start_a_sender(mproc::Queue<SharedBuffer> unread, mproc::Queue<std::string> names) {
    mproc::Process sender(put_unread, unread, names);
    sender.start();
    sender.join();
    if (sender.exitcode() != 0) throw std::runtime_error("the grandchild failed");
}

void check_vector_and_struct(mproc::Queue<std::vector<SharedBuffer>> vectors, mproc::Queue<Frame> frames) {
    const std::vector<SharedBuffer> got = vectors.get(true, 20s);
    if (got.size() != 3) throw std::runtime_error("received " + std::to_string(got.size()) + " buffers");
    for (std::uint64_t i = 0; i < 3; ++i) require_pattern(got[i], kOddSize, 60 + i);
    const Frame f = frames.get(true, 20s);
    if (f.label != "frame" || f.number != 7) throw std::runtime_error("the struct's other members differ");
    require_pattern(f.pixels, kOddSize, 63);
}

constexpr int kSweptHandovers = 1500;

void sweep_until(mproc::Event stop) {
    while (!stop.is_set()) (void)mproc::sweep_shared_memory();
}

void put_many(mproc::Queue<SharedBuffer> q) {
    for (int i = 0; i < kSweptHandovers; ++i) {
        SharedBuffer buffer(4096 + static_cast<std::size_t>(i));
        fill(buffer, static_cast<std::uint64_t>(i));
        q.put(buffer);
    }
}

}  // namespace

// A grandchild puts a buffer nobody reads; once it and its parent (the buffer's two keepers) have
// ended, a sweep removes the buffer, and the message left in the queue is a DecodeError.
TEST_P(SharedBufferHandover, InTransitGoesOnceItsSenderAndTheSendersParentEnded) {
    mproc::Queue<SharedBuffer> unread;
    mproc::Queue<std::string> names;
    auto parent = started(start_a_sender, unread, names);
    const std::string name = names.get(true, 20s);
    ASSERT_EQ(joined(parent), 0);
    (void)mproc::sweep_shared_memory();
    EXPECT_FALSE(mproc::testing::shm_exists(name)) << "kept after both of its keepers ended";
    EXPECT_NE(decode_error_of([&] { (void)unread.get(true, 20s); }).find("no longer exists"), std::string::npos);
}

// Buffers inside other values: a vector of them, and a struct member, through a queue.
TEST_P(SharedBufferHandover, BuffersInsideAVectorAndAStruct) {
    mproc::Queue<std::vector<SharedBuffer>> vectors;
    mproc::Queue<Frame> frames;
    std::vector<SharedBuffer> buffers;
    for (std::uint64_t seed = 60; seed < 63; ++seed) {
        buffers.emplace_back(kOddSize);
        fill(buffers.back(), seed);
    }
    Frame frame{"frame", SharedBuffer(kOddSize), 7};
    fill(frame.pixels, 63);
    auto child = started(check_vector_and_struct, vectors, frames);
    vectors.put(buffers);
    frames.put(frame);
    for (const auto& b : buffers) EXPECT_FALSE(b) << "a buffer of the vector was not handed over";
    EXPECT_FALSE(frame.pixels) << "the struct's buffer was not handed over";
    EXPECT_EQ(joined(child), 0) << "the receiver's checks failed";
}

// Sweeps run all the time while buffers are handed over: none is removed in transit or held.
TEST_P(SharedBufferHandover, ConcurrentSweepsDuringHandovers) {
    mproc::Queue<SharedBuffer> q(4);
    mproc::Event stop;
    auto sweeper = started(sweep_until, stop);
    auto producer = started(put_many, q);
    int intact = 0;
    try {
        for (int i = 0; i < kSweptHandovers; ++i) {
            const SharedBuffer received = q.get(true, 60s);
            if (received.size() == 4096 + static_cast<std::size_t>(i) &&
                first_difference(received, static_cast<std::uint64_t>(i)) == received.size())
                ++intact;
        }
    } catch (const std::exception& e) {
        ADD_FAILURE() << "receiving: " << e.what();
        producer.kill();  // it may wait for room that will never come
    }
    stop.set();
    EXPECT_EQ(joined(producer), 0);
    EXPECT_EQ(joined(sweeper), 0);
    EXPECT_EQ(intact, kSweptHandovers);
}

// The parent drops its buffer while a forked child still uses its inherited copy: the name goes,
// the child's mapping stays valid.
TEST_F(SharedBufferMessages, AnInheritedMappingOutlivesTheParentsDrop) {
    SharedBuffer buffer(kOddSize);
    fill(buffer, 57);
    const std::string name = buffer.name();
    mproc::Event mapped, dropped;
    auto child = mproc::fork_context.Process([&buffer, mapped, dropped]() mutable {
        mapped.set();
        if (!dropped.wait(20s)) throw std::runtime_error("the parent did not drop the buffer");
        require_pattern(buffer, kOddSize, 57);
        fill(buffer, 58);  // still writable
    });
    child.start();
    ASSERT_TRUE(mapped.wait(20s));
    buffer.release();
    EXPECT_FALSE(mproc::testing::shm_exists(name));
    dropped.set();
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

