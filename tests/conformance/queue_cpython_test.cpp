// CPython's own tests of the queues (Lib/test/_test_multiprocessing.py: _TestQueue, with its
// JoinableQueue tests, and TestSimpleQueue), ported to mproc and run once per start method. Each
// test names its origin; where CPython sleeps to let the feeder thread catch up, the port needs
// no sleep: a put() that finds room writes the message to shared memory before it returns. The
// deliberate differences (an encoding error is thrown by put(); a closed queue still answers
// empty()) are rows of docs/differences.md, tested here as mproc behaves.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/synchronize.hpp"

using namespace std::chrono_literals;
using mproc::StartMethod;
using mproc::testing::time_of;

namespace {

constexpr auto kTimeout = 100ms;  // CPython's TIMEOUT1..3

class CPythonQueue : public mproc::testing::PerStartMethodTest {
protected:
    CPythonQueue() : PerStartMethodTest("a CPython queue test") {}
};

// CPython's child_can_start / parent_can_continue pair: the child does its part when told, and
// says when it is done.
struct Handover {
    mproc::Event child_can_start, parent_can_continue;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(child_can_start, parent_can_continue);
    }
    // In the child: waits for its turn (false if it never came).
    bool child_turn() { return child_can_start.wait(30s); }
    void child_done() { parent_can_continue.set(); }
    // In the parent: lets the child do its part and waits until it has.
    void let_the_child_run() {
        child_can_start.set();
        ASSERT_TRUE(parent_can_continue.wait(30s));
    }
};

void take_six(mproc::Queue<int> queue, Handover turns) {
    if (!turns.child_turn()) mproc::exit(1);
    for (int i = 0; i < 6; ++i) queue.get();
    turns.child_done();
}

// CPython: _TestQueue.test_put
TEST_P(CPythonQueue, PutFillsABoundedQueueThenRaisesFull) {
    constexpr long kMaxsize = 6;
    mproc::Queue<int> queue(kMaxsize);
    Handover turns;
    auto p = started(take_six, queue, turns);
    EXPECT_TRUE(queue.empty());
    EXPECT_FALSE(queue.full());

    queue.put(1);
    queue.put(2, true);
    queue.put(3, true, 1h);
    queue.put(4, false);
    queue.put(5, false, 1h);
    queue.put_nowait(6);
    // A bounded put() returns once the message is in shared memory: no need to wait for a feeder.
    EXPECT_FALSE(queue.empty());
    EXPECT_TRUE(queue.full());

    EXPECT_THROW(queue.put(7, false), mproc::Full);
    EXPECT_THROW(queue.put_nowait(7), mproc::Full);
    auto took = time_of([&] { EXPECT_THROW(queue.put(7, true, kTimeout), mproc::Full); });
    EXPECT_GE(took, kTimeout);
    EXPECT_THROW(queue.put(7, false, kTimeout), mproc::Full);  // block=false ignores the timeout

    turns.let_the_child_run();
    EXPECT_TRUE(queue.empty());
    EXPECT_FALSE(queue.full());
    EXPECT_EQ(joined(p), 0);
}

void put_two_to_five(mproc::Queue<int> queue, Handover turns) {
    if (!turns.child_turn()) mproc::exit(1);
    for (int i = 2; i <= 5; ++i) queue.put(i);
    turns.child_done();
}

// CPython: _TestQueue.test_get
TEST_P(CPythonQueue, GetTakesWhatAnotherProcessPutThenRaisesEmpty) {
    mproc::Queue<int> queue;
    Handover turns;
    auto p = started(put_two_to_five, queue, turns);
    EXPECT_TRUE(queue.empty());
    turns.let_the_child_run();
    // CPython sleeps here for the child's feeder; an mproc put() that found room has written.
    EXPECT_FALSE(queue.empty());
    EXPECT_EQ(queue.get(true), 2);
    EXPECT_EQ(queue.get(), 3);
    EXPECT_EQ(queue.get(true, 1s), 4);
    EXPECT_EQ(queue.get_nowait(), 5);
    EXPECT_TRUE(queue.empty());

    EXPECT_THROW(queue.get(false), mproc::Empty);
    EXPECT_THROW(queue.get_nowait(), mproc::Empty);
    auto took = time_of([&] { EXPECT_THROW(queue.get(true, kTimeout), mproc::Empty); });
    EXPECT_GE(took, kTimeout);
    EXPECT_THROW(queue.get(false, kTimeout), mproc::Empty);
    EXPECT_EQ(joined(p), 0);
}

void put_ten_to_nineteen(mproc::Queue<int> queue) {
    for (int i = 10; i < 20; ++i) queue.put(i);
    // What a process put is delivered after it ends (its exit waits for its feeder).
}

// CPython: _TestQueue.test_fork
TEST_P(CPythonQueue, AChildStartedAfterPutsAddsItsOwnInOrder) {
    mproc::Queue<int> queue;
    for (int i = 0; i < 10; ++i) queue.put(i);
    auto p = started(put_ten_to_nineteen, queue);
    for (int i = 0; i < 20; ++i) ASSERT_EQ(queue.get(true, 30s), i);
    EXPECT_THROW(queue.get(false), mproc::Empty);
    EXPECT_EQ(joined(p), 0);
}

// CPython: _TestQueue.test_qsize
TEST_P(CPythonQueue, QsizeCountsTheMessages) {
    mproc::Queue<int> q;
    EXPECT_EQ(q.qsize(), 0);
    q.put(1);
    EXPECT_EQ(q.qsize(), 1);
    q.put(5);
    EXPECT_EQ(q.qsize(), 2);
    q.get();
    EXPECT_EQ(q.qsize(), 1);
    q.get();
    EXPECT_EQ(q.qsize(), 0);
}

void finish_tasks(mproc::JoinableQueue<int> q) {
    for (int task = q.get(); task >= 0; task = q.get()) q.task_done();
}

// CPython: _TestQueue.test_task_done
TEST_P(CPythonQueue, JoinWaitsForEveryTaskDoneByWorkers) {
    mproc::JoinableQueue<int> queue;
    std::vector<mproc::Process> workers;
    for (int i = 0; i < 4; ++i) workers.emplace_back(finish_tasks, queue).start();
    for (int i = 0; i < 10; ++i) queue.put(i);
    queue.join();
    EXPECT_EQ(queue.qsize(), 0);
    for (std::size_t i = 0; i < workers.size(); ++i) queue.put(-1);  // CPython's None
    for (auto& w : workers) EXPECT_EQ(joined(w), 0);
}

// CPython: _TestQueue.test_timeout
TEST_P(CPythonQueue, GetTimesOutWithEmpty) {
    mproc::Queue<int> q;
    auto took = time_of([&] { EXPECT_THROW(q.get(true, 200ms), mproc::Empty); });
    EXPECT_GE(took, 200ms);  // CPython tolerates 100 ms of clock resolution; steady_clock needs none
}

// A value that cannot be encoded (CPython's NotSerializable, whose __reduce__ raises).
struct Fussy {
    bool refuse = false;
    int value = 0;
    template <class Archive>
    void save(Archive& ar) const {
        if (refuse) throw std::runtime_error("cannot encode this one");
        ar(value);
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(value);
    }
};

// CPython: _TestQueue.test_queue_feeder_donot_stop_onexc. Python's feeder thread prints the error
// and goes on; mproc encodes in put(), which throws it (a deliberate difference): nothing is
// queued, the queue goes on working, and a bounded queue's count is unharmed (bpo-33078).
TEST_P(CPythonQueue, AValueThatCannotBeEncodedIsThrownByPutAndTheQueueGoesOn) {
    for (long maxsize : {0L, 1L}) {
        mproc::Queue<Fussy> q(maxsize);
        EXPECT_THROW(q.put(Fussy{true, 1}), std::runtime_error);
        q.put(Fussy{false, 2});
        EXPECT_EQ(q.qsize(), 1);
        EXPECT_EQ(q.get(true, 30s).value, 2);
        EXPECT_TRUE(q.empty());
    }
}

// CPython: _TestQueue.test_closed_queue_empty_exceptions. Python: empty() on a used queue after
// close() is OSError("handle is closed"). mproc (a deliberate difference): close() says this
// process will put and get no more, and empty(), qsize() and full() still answer.
template <class Q>
void check_empty_after_close() {
    Q unused;
    unused.close();
    unused.join_thread();
    EXPECT_TRUE(unused.empty());
    Q used;
    used.put("foo");
    used.close();
    used.join_thread();
    EXPECT_FALSE(used.empty());  // the message is still in shared memory, for other processes
    EXPECT_EQ(used.qsize(), 1);
}

TEST_P(CPythonQueue, AClosedQueueStillAnswersEmpty) {
    check_empty_after_close<mproc::Queue<std::string>>();
    check_empty_after_close<mproc::JoinableQueue<std::string>>();
}

// CPython: _TestQueue.test_closed_queue_put_get_exceptions (Python's ValueError is UsageError,
// with Python's message)
template <class Q>
void check_put_get_after_close() {
    Q q;
    q.close();
    const std::regex closed(R"(Queue <Queue object at 0x[0-9a-f]+> is closed)");
    try {
        q.put("foo");
        ADD_FAILURE() << "put() after close()";
    } catch (const mproc::UsageError& e) {
        EXPECT_TRUE(std::regex_match(e.what(), closed)) << e.what();
    }
    try {
        q.get();
        ADD_FAILURE() << "get() after close()";
    } catch (const mproc::UsageError& e) {
        EXPECT_TRUE(std::regex_match(e.what(), closed)) << e.what();
    }
}

TEST_P(CPythonQueue, PutAndGetOnAClosedQueueAreErrors) {
    check_put_get_after_close<mproc::Queue<std::string>>();
    check_put_get_after_close<mproc::JoinableQueue<std::string>>();
}

// ---------------------------------------------------------------------------------------------
// TestSimpleQueue

void report_emptiness(mproc::SimpleQueue<bool> queue, Handover turns) {
    if (!turns.child_turn()) mproc::exit(1);
    queue.put(queue.empty());  // issue 30301: could fail under spawn and forkserver
    queue.put(queue.empty());
    turns.child_done();
}

// CPython: TestSimpleQueue.test_empty
TEST_P(CPythonQueue, SimpleQueueEmptyIsSeenAcrossProcesses) {
    mproc::SimpleQueue<bool> queue;
    Handover turns;
    auto p = started(report_emptiness, queue, turns);
    EXPECT_TRUE(queue.empty());
    turns.let_the_child_run();
    EXPECT_FALSE(queue.empty());
    EXPECT_TRUE(queue.get());
    EXPECT_FALSE(queue.get());
    EXPECT_TRUE(queue.empty());
    EXPECT_EQ(joined(p), 0);
}

// CPython: TestSimpleQueue.test_close
TEST_P(CPythonQueue, SimpleQueueClosesTwice) {
    mproc::SimpleQueue<int> queue;
    queue.close();
    queue.close();
    EXPECT_THROW(queue.put(1), mproc::UsageError);
}

// CPython: TestSimpleQueue.test_empty_exceptions (Python: OSError after close(); mproc answers, as
// for Queue above)
TEST_P(CPythonQueue, AClosedSimpleQueueStillAnswersEmpty) {
    mproc::SimpleQueue<int> queue;
    queue.close();
    EXPECT_TRUE(queue.empty());
}

INSTANTIATE_TEST_SUITE_P(StartMethods, CPythonQueue,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         mproc::testing::start_method_name);

}  // namespace
