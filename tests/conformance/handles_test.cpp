// Handles given to processes, once per start method: a Process lets go of its target and its
// arguments when it starts (Python's start() drops _target, _args and _kwargs), so the parent's
// copy of a Connection moved into a child is closed then, and the child's end of file reaches the
// other end; and one handle can be given to several processes, as in Python.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/connection.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"

using namespace std::chrono_literals;
using mproc::Connection;
using mproc::StartMethod;

namespace {

// Generous: only a broken build waits this long. The waits end as soon as the state is reached.
constexpr auto kPatience = 60s;

class Handles : public mproc::testing::PerStartMethodTest {
protected:
    Handles() : PerStartMethodTest("a handles test") {}
};

INSTANTIATE_TEST_SUITE_P(StartMethods, Handles,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         [](const auto& info) { return std::string(mproc::to_string(info.param)); });

// Expects end of file on `reader` (after the messages already sent): ready within kPatience, then
// EOFError, as Python's recv raises EOFError once every write end is closed.
void expect_end_of_file(Connection& reader) {
    ASSERT_TRUE(reader.poll(kPatience)) << "end of file never came: a write end is still open somewhere";
    EXPECT_THROW(reader.recv<int>(), mproc::EOFError);
}

void send_and_exit(Connection& writer, int value) { writer.send(value); }

void send_close_then_wait(Connection& writer, Connection& hold) {
    writer.send(1);
    writer.close();
    static_cast<void>(hold.recv<int>());  // stays alive until the parent has seen end of file
}

void send_own_number(Connection& writer, int number) { writer.send(number); }

void do_nothing() {}

int read_first_byte(mproc::SharedMemory shm) { return static_cast<int>(shm.buf()[0]); }

void exit_with_first_byte(mproc::SharedMemory shm) { mproc::exit(read_first_byte(std::move(shm))); }

void put_number(mproc::Queue<int> queue, int number) { queue.put(number); }

}  // namespace

// CPython: _TestConnection.test_connection (the child side ends, recv raises EOFError).
TEST_P(Handles, PipeEndMovedIntoAChildIsClosedInTheParentAtStart) {
    auto [reader, writer] = mproc::Pipe(false);
    mproc::Process child(send_and_exit, std::move(writer), 42);
    child.start();
    EXPECT_EQ(reader.recv<int>(), 42);
    expect_end_of_file(reader);
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

TEST_P(Handles, ChildClosingItsEndGivesEndOfFileWhileItStillRuns) {
    auto [reader, writer] = mproc::Pipe(false);
    auto [hold_parent, hold_child] = mproc::Pipe();
    mproc::Process child(send_close_then_wait, std::move(writer), std::move(hold_child));
    child.start();
    EXPECT_EQ(reader.recv<int>(), 1);
    expect_end_of_file(reader);
    EXPECT_TRUE(child.is_alive());
    hold_parent.send(0);
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

// Several readers, each fed by a child that exits: connection::wait reports every one of them at
// end of file (CPython: _TestWait.test_wait).
TEST_P(Handles, WaitSeesEndOfFileOfEveryReaderFedByAChildThatExited) {
    constexpr int kChildren = 4;
    std::vector<Connection> readers;
    std::vector<mproc::Process> children;
    for (int i = 0; i < kChildren; ++i) {
        auto [reader, writer] = mproc::Pipe(false);
        readers.push_back(std::move(reader));
        children.emplace_back(send_and_exit, std::move(writer), i);
        children.back().start();
    }
    std::vector<int> received;
    std::vector<Connection*> open;
    for (auto& r : readers) open.push_back(&r);
    while (!open.empty()) {
        auto ready = mproc::connection::wait(open, kPatience);
        ASSERT_FALSE(ready.empty()) << open.size() << " readers never reached end of file";
        for (Connection* r : ready) {
            try {
                received.push_back(r->recv<int>());
            } catch (const mproc::EOFError&) {
                open.erase(std::find(open.begin(), open.end(), r));
            }
        }
    }
    std::sort(received.begin(), received.end());
    EXPECT_EQ(received, (std::vector<int>{0, 1, 2, 3}));
    for (auto& c : children) c.join();
}

// One write end given to five children: each Process holds a duplicate of the descriptor, and
// the reader sees end of file once the parent closed its own and the children ended.
TEST_P(Handles, FiveChildrenWriteThroughOneEnd) {
    auto [reader, writer] = mproc::Pipe(false);
    std::vector<mproc::Process> children;
    for (int i = 0; i < 5; ++i) children.emplace_back(send_own_number, writer, i);
    for (auto& c : children) c.start();
    writer.close();
    std::vector<int> received;
    for (int i = 0; i < 5; ++i) received.push_back(reader.recv<int>());
    std::sort(received.begin(), received.end());
    EXPECT_EQ(received, (std::vector<int>{0, 1, 2, 3, 4}));
    expect_end_of_file(reader);
    for (auto& c : children) {
        c.join();
        EXPECT_EQ(c.exitcode(), 0);
    }
}

// A duplex end given to several children: they all write to the one parent end.
TEST_P(Handles, OneDuplexEndSharedByChildren) {
    auto [parent_end, child_end] = mproc::Pipe();
    mproc::Process a(send_own_number, child_end, 7);
    mproc::Process b(send_own_number, child_end, 8);
    a.start();
    b.start();
    child_end.close();
    std::vector<int> received = {parent_end.recv<int>(), parent_end.recv<int>()};
    std::sort(received.begin(), received.end());
    EXPECT_EQ(received, (std::vector<int>{7, 8}));
    expect_end_of_file(parent_end);
    a.join();
    b.join();
}

// The Process object (and the runtime's record of the child) holds no descriptor after start():
// the parent's descriptor count is back where it was while the child still runs.
TEST_P(Handles, StartedProcessHoldsNoDescriptorOfItsArguments) {
    // What a started Process keeps of its own (its sentinel), measured on one without arguments.
    int kept_by_a_process = 0;
    {
        const int before = mproc::testing::count_open_fds();
        mproc::Process control(do_nothing);
        control.start();
        control.join();
        kept_by_a_process = mproc::testing::count_open_fds() - before;
    }
    auto [hold_parent, hold_child] = mproc::Pipe();
    auto [reader, writer] = mproc::Pipe(false);
    const int before = mproc::testing::count_open_fds();
    mproc::Process child(send_close_then_wait, writer, hold_child);  // copies: two more descriptors
    EXPECT_EQ(mproc::testing::count_open_fds(), before + 2);
    child.start();
    EXPECT_EQ(mproc::testing::count_open_fds(), before + kept_by_a_process);
    writer.close();
    hold_child.close();
    EXPECT_EQ(reader.recv<int>(), 1);
    // A fork child also inherited the parent's own `writer` (as in Python, a fork child has every
    // descriptor of its parent), so end of file comes when it ends, under every start method.
    hold_parent.send(0);
    expect_end_of_file(reader);
    child.join();
}

// A SharedMemory moved into a child: the child still reaches the segment, under every start
// method, though the parent's only handle was released at start.
TEST_P(Handles, SharedMemoryMovedIntoAChildStaysReachable) {
    mproc::SharedMemory shm({.create = true, .size = 64});
    const std::string name = shm.name();
    shm.buf()[0] = std::byte{37};
    mproc::Process child(exit_with_first_byte, std::move(shm));
    child.start();
    child.join();
    EXPECT_EQ(child.exitcode(), 37);
    // As in Python, the name stays until someone unlinks it.
    mproc::SharedMemory again({.name = name});
    again.close();
    again.unlink();
}

// A queue given to several children by copy, as Python passes one Queue to many processes.
TEST_P(Handles, OneQueueGivenToSeveralChildren) {
    mproc::Queue<int> queue;
    std::vector<mproc::Process> children;
    for (int i = 0; i < 3; ++i) children.emplace_back(put_number, queue, i);
    for (auto& c : children) c.start();
    std::vector<int> received;
    for (int i = 0; i < 3; ++i) received.push_back(queue.get());
    std::sort(received.begin(), received.end());
    EXPECT_EQ(received, (std::vector<int>{0, 1, 2}));
    for (auto& c : children) c.join();
}

// A copy of a Connection is a second descriptor for the same channel.
TEST(ConnectionCopy, DuplicatesTheDescriptor) {
    auto [a, b] = mproc::Pipe();
    Connection copy = b;
    EXPECT_NE(copy.fileno(), b.fileno());
    EXPECT_EQ(copy.readable(), b.readable());
    EXPECT_EQ(copy.writable(), b.writable());
    copy.send(5);
    EXPECT_EQ(a.recv<int>(), 5);
    b.close();
    EXPECT_FALSE(copy.closed());
    a.send(6);
    EXPECT_EQ(copy.recv<int>(), 6);
    copy = Connection();
    EXPECT_TRUE(copy.closed());
    EXPECT_TRUE(a.poll(kPatience));
    EXPECT_THROW(a.recv<int>(), mproc::EOFError);  // both b and its copy are closed now
    const Connection closed_copy = b;
    EXPECT_TRUE(closed_copy.closed());
    // wait() returns the ready Connections themselves, never copies.
    std::vector<Connection> ends;
    ends.push_back(std::move(a));
    auto ready = mproc::connection::wait(ends, 0s);
    static_assert(std::is_same_v<decltype(ready), std::vector<Connection*>>);
    ASSERT_EQ(ready.size(), 1u);
    EXPECT_EQ(ready[0], &ends[0]);
}

TEST(ConnectionCopy, SimplexEndsKeepTheirDirection) {
    auto [reader, writer] = mproc::Pipe(false);
    Connection reader_copy = reader;
    Connection writer_copy;
    writer_copy = writer;
    EXPECT_TRUE(reader_copy.readable());
    EXPECT_FALSE(reader_copy.writable());
    EXPECT_FALSE(writer_copy.readable());
    EXPECT_TRUE(writer_copy.writable());
    writer_copy.send(std::string("through the copy"));
    EXPECT_EQ(reader_copy.recv<std::string>(), "through the copy");
}
