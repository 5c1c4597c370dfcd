// Queues between processes, once per start method: a queue given to a child as a Process argument
// is the same queue there. Producers and consumers in separate processes, messages of random
// sizes (some larger than the buffer), delivery at exit, cancel_join_thread, JoinableQueue.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "helpers/queue_test_helpers.hpp"
#include "helpers/sync_test_helpers.hpp"
#include "helpers/thread_state.hpp"
#include "mproc/context.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"

using namespace std::chrono_literals;
using mproc::StartMethod;

namespace {

constexpr mproc::QueueOptions kSmallBuffer{.buffer_size = 4096};

using Item = mproc::testing::QueueItem;

std::string payload_for(int producer, int seq) { return mproc::testing::queue_payload(producer, seq, kSmallBuffer.buffer_size); }

class QueueConformance : public mproc::testing::PerStartMethodTest {
protected:
    QueueConformance() : PerStartMethodTest("a queue conformance test") {}
};

void greet(mproc::Queue<std::string> q, int n) { q.put("hello from " + std::to_string(n)); }

TEST_P(QueueConformance, ChildrenPutParentGets) {
    mproc::Queue<std::string> q;
    std::vector<mproc::Process> jobs;
    for (int i = 0; i < 4; ++i) jobs.emplace_back(greet, q, i).start();
    std::set<std::string> got;
    for (int i = 0; i < 4; ++i) got.insert(q.get(true, 20s));
    for (auto& j : jobs) EXPECT_EQ(joined(j), 0);
    EXPECT_EQ(got, (std::set<std::string>{"hello from 0", "hello from 1", "hello from 2", "hello from 3"}));
}

void produce(mproc::Queue<Item> q, int producer, int count) {
    for (int i = 0; i < count; ++i) q.put(Item{producer, i, payload_for(producer, i)});
}

// Put far more than the buffer holds and return at once: the exit sequence waits for the feeder,
// so every message arrives although the child ended before anyone read.
TEST_P(QueueConformance, WhatAProcessPutArrivesAfterItExits) {
    mproc::Queue<Item> q(0, kSmallBuffer);
    mproc::Process p(produce, q, 0, 300);
    p.start();
    for (int i = 0; i < 300; ++i) {
        Item item = q.get(true, 30s);
        ASSERT_EQ(item.seq, i);
        ASSERT_EQ(item.payload, payload_for(0, i));
    }
    EXPECT_EQ(joined(p), 0);
    EXPECT_THROW(q.get_nowait(), mproc::Empty);
}

void produce_and_cancel(mproc::Queue<std::string> q) {
    for (int i = 0; i < 100; ++i) q.put(std::string(1000, 'x'));
    q.cancel_join_thread();
}

TEST_P(QueueConformance, CancelJoinThreadLetsAProducerExitWithUnwrittenMessages) {
    mproc::Queue<std::string> q(0, kSmallBuffer);
    mproc::Process p(produce_and_cancel, q);
    p.start();
    // Nobody reads: without cancel_join_thread the child would wait for its feeder forever.
    EXPECT_EQ(joined(p, 20s), 0);
    int received = 0;
    try {
        for (;;) {
            EXPECT_EQ(q.get_nowait(), std::string(1000, 'x'));
            ++received;
        }
    } catch (const mproc::Empty&) {
    }
    EXPECT_GT(received, 0);
    EXPECT_LT(received, 100);
}

void consume_into(mproc::Queue<Item> q, mproc::Queue<std::vector<std::pair<int, int>>> results) {
    std::vector<std::pair<int, int>> got;
    for (;;) {
        Item item = q.get();
        if (item.producer < 0) break;  // poison pill
        if (item.payload != payload_for(item.producer, item.seq)) mproc::exit(3);  // garbled
        got.emplace_back(item.producer, item.seq);
    }
    results.put(got);
}

// N producers x M consumers, random sizes (some three times the buffer): every message arrives
// exactly once, intact, and each consumer sees each producer's messages in order.
TEST_P(QueueConformance, ManyProducersManyConsumersNothingLostNothingDoubled) {
    constexpr int kProducers = 3, kConsumers = 2, kEach = 1500;
    mproc::Queue<Item> q(0, kSmallBuffer);
    mproc::Queue<std::vector<std::pair<int, int>>> results;
    std::vector<mproc::Process> consumers, producers;
    for (int c = 0; c < kConsumers; ++c) consumers.emplace_back(consume_into, q, results).start();
    for (int p = 0; p < kProducers; ++p) producers.emplace_back(produce, q, p, kEach).start();
    for (auto& p : producers) EXPECT_EQ(joined(p, 60s), 0);
    for (int c = 0; c < kConsumers; ++c) q.put(Item{-1, 0, {}});
    std::vector<std::vector<bool>> seen(kProducers, std::vector<bool>(kEach, false));
    for (int c = 0; c < kConsumers; ++c) {
        auto got = results.get(true, 60s);
        std::vector<int> last(kProducers, -1);
        for (auto [p, i] : got) {
            ASSERT_FALSE(seen[p][i]) << "delivered twice: " << p << "/" << i;
            seen[p][i] = true;
            ASSERT_GT(i, last[p]) << "producer " << p << "'s order broken";
            last[p] = i;
        }
    }
    for (auto& c : consumers) EXPECT_EQ(joined(c), 0) << "a consumer saw a garbled message (exit 3)";
    for (int p = 0; p < kProducers; ++p)
        for (int i = 0; i < kEach; ++i) ASSERT_TRUE(seen[p][i]) << "lost: " << p << "/" << i;
}

void bounded_producer(mproc::Queue<int> q) {
    for (int i = 0; i < 1000; ++i) q.put(i);
}

TEST_P(QueueConformance, BoundedQueueHoldsAtMostMaxsize) {
    mproc::Queue<int> q(3);
    mproc::Process p(bounded_producer, q);
    p.start();
    // The child fills the queue and then sleeps in put(), waiting for room.
    ASSERT_TRUE(mproc::testing::eventually([&] { return q.full(); }));
    ASSERT_TRUE(mproc::testing::wait_until_blocked(*p.pid()));
    EXPECT_EQ(q.qsize(), 3);
    EXPECT_TRUE(q.full());
    for (int i = 0; i < 1000; ++i) {
        ASSERT_LE(q.qsize(), 3);
        ASSERT_EQ(q.get(true, 20s), i);
    }
    EXPECT_EQ(joined(p), 0);
}

void worker(mproc::JoinableQueue<int> tasks, mproc::Queue<long> results) {
    long sum = 0;
    for (;;) {
        const int n = tasks.get();
        if (n < 0) {
            tasks.task_done();
            break;
        }
        sum += n;
        tasks.task_done();
    }
    results.put(sum);
}

TEST_P(QueueConformance, JoinableQueueJoinsAcrossProcesses) {
    mproc::JoinableQueue<int> tasks;
    mproc::Queue<long> results;
    std::vector<mproc::Process> workers;
    for (int i = 0; i < 2; ++i) workers.emplace_back(worker, tasks, results).start();
    for (int i = 1; i <= 1000; ++i) tasks.put(i);
    for (int i = 0; i < 2; ++i) tasks.put(-1);
    tasks.join();
    EXPECT_EQ(tasks.qsize(), 0);
    EXPECT_EQ(results.get(true, 10s) + results.get(true, 10s), 500500);
    for (auto& w : workers) EXPECT_EQ(joined(w), 0);
}

void echo(mproc::SimpleQueue<std::string> in, mproc::SimpleQueue<std::string> out) {
    for (;;) {
        std::string s = in.get();
        if (s.empty()) return;
        out.put(s + s);
    }
}

TEST_P(QueueConformance, SimpleQueuesRequestReply) {
    mproc::SimpleQueue<std::string> in(kSmallBuffer), out(kSmallBuffer);
    mproc::Process p(echo, in, out);
    p.start();
    for (int i = 1; i < 200; ++i) {
        std::string s(static_cast<std::size_t>(i * 37), 'q');
        in.put(s);
        ASSERT_EQ(out.get(), s + s);
    }
    in.put("");
    EXPECT_EQ(joined(p), 0);
}

void echo_with_pauses(mproc::Queue<int> requests, mproc::Queue<int> replies, int count) {
    for (int i = 0; i < count; ++i) {
        const int n = requests.get();
        // Now and then long enough for the other side to stop spinning and sleep.
        if (i % 7 == 3) std::this_thread::sleep_for(std::chrono::microseconds(60 + i % 5 * 20));
        replies.put(n + 1);
    }
}

// Request/reply where each side now spins, now sleeps: a wake-up lost between a put() and a get()
// going to sleep would hang this test (the watchdog ends it with a message).
TEST_P(QueueConformance, NoWakeUpIsLostBetweenSpinningAndSleeping) {
    constexpr int kRounds = 4000;
    mproc::Queue<int> requests, replies;
    mproc::Process p(echo_with_pauses, requests, replies, kRounds);
    p.start();
    for (int i = 0; i < kRounds; ++i) {
        if (i % 11 == 5) std::this_thread::sleep_for(std::chrono::microseconds(70));
        requests.put(i);
        ASSERT_EQ(replies.get(true, 20s), i + 1);
    }
    EXPECT_EQ(joined(p), 0);
}

// Python's way to give Pool workers a queue: the initializer's arguments.
std::optional<mproc::Queue<int>> worker_queue;
void keep_queue(mproc::Queue<int> q) { worker_queue = std::move(q); }
int report(int x) {
    worker_queue->put(x * 10);
    return x;
}

TEST_P(QueueConformance, PoolWorkersGetAQueueThroughTheInitializer) {
    mproc::Queue<int> q;
    {
        mproc::Pool pool({.processes = 2, .initializer = {keep_queue, q}});
        EXPECT_EQ(pool.map(report, std::vector<int>{1, 2, 3, 4}), (std::vector<int>{1, 2, 3, 4}));
        pool.close();
        pool.join();
    }
    std::multiset<int> got;
    for (int i = 0; i < 4; ++i) got.insert(q.get(true, 10s));
    EXPECT_EQ(got, (std::multiset<int>{10, 20, 30, 40}));
}

void put_one(mproc::Queue<std::string> q) { q.put("from the child"); }

// A forked child inherits the parent's memory, including messages waiting for the parent's
// feeder; they must stay the parent's, or they would arrive twice.
TEST(QueueFork, ChildDoesNotResendItsParentsWaitingMessages) {
    mproc::Queue<std::string> q(0, mproc::QueueOptions{.buffer_size = 4096, .room_wait = std::chrono::microseconds(0)});
    for (int i = 0; i < 20; ++i) q.put(std::to_string(i) + std::string(1000, '.'));  // most wait for the feeder
    // The feeder has started and sleeps, waiting for room: the fork copies no lock it holds.
    ASSERT_TRUE(mproc::testing::wait_until_other_threads_sleep());
    mproc::Process child(mproc::ProcessOptions{.start_method = StartMethod::fork}, put_one, q);
    child.start();
    std::vector<std::string> got;
    for (int i = 0; i < 21; ++i) got.push_back(q.get(true, 20s));
    child.join(20s);
    EXPECT_EQ(child.exitcode(), 0);
    EXPECT_THROW(q.get(true, 200ms), mproc::Empty);
    std::vector<std::string> parents;
    int from_child = 0;
    for (auto& s : got) {
        if (s == "from the child") {
            ++from_child;
        } else {
            parents.push_back(s);
        }
    }
    EXPECT_EQ(from_child, 1);
    ASSERT_EQ(parents.size(), 20u);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(parents[static_cast<std::size_t>(i)], std::to_string(i) + std::string(1000, '.'));
}

INSTANTIATE_TEST_SUITE_P(StartMethods, QueueConformance,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         mproc::testing::start_method_name);

}  // namespace
