// Queues whose producers and consumers are killed with SIGKILL at random moments (spec/faults.md
// row 7): nothing but what was in flight in a killed process is lost, nothing is delivered twice
// or garbled, and the queue goes on working for everyone else.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "helpers/queue_test_helpers.hpp"
#include "helpers/sync_test_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/sharedctypes.hpp"

using namespace std::chrono_literals;

namespace {

constexpr int kMaxSeq = 1 << 20;
constexpr int kMaxProducers = 64;
constexpr mproc::QueueOptions kSmallBuffer{.buffer_size = 8192};

using Item = mproc::testing::QueueItem;

std::string payload_for(int producer, int seq) { return mproc::testing::queue_payload(producer, seq, kSmallBuffer.buffer_size); }

class QueueFaults : public mproc::testing::LeakCheckedTest {
protected:
    QueueFaults() : LeakCheckedTest("a queue fault test", true) {}
};

// Puts numbered messages until killed; marks[producer] = how many put() calls returned.
void produce_forever(mproc::Queue<Item> q, mproc::RawArray<int> marks, int producer) {
    for (int seq = 0; seq < kMaxSeq; ++seq) {
        q.put(Item{producer, seq, payload_for(producer, seq)});
        std::atomic_ref<int>(marks[producer]).store(seq + 1, std::memory_order_release);
    }
}

void produce_some(mproc::Queue<Item> q, int producer, int count) {
    for (int seq = 0; seq < count; ++seq) q.put(Item{producer, seq, payload_for(producer, seq)});
}

// Producers of a bounded queue (whose put() returns once the message is in shared memory) are
// killed at random; a consumer in this process checks every message. A killed producer's messages
// must be exactly those whose put() returned, plus perhaps the one it was writing.
TEST_F(QueueFaults, ProducersKilledMidPutLoseOnlyWhatWasInFlight) {
    mproc::set_start_method("fork", true);
    mproc::Queue<Item> q(100000, kSmallBuffer);
    mproc::RawArray<int> marks(kMaxProducers);
    constexpr int kKills = 12, kFinal = 200, kFinalProducer = kMaxProducers - 1;

    std::vector<std::vector<int>> received(kMaxProducers);
    std::atomic<bool> garbled{false}, duplicate_or_reordered{false};
    std::thread consumer([&] {
        for (;;) {
            Item item = q.get(true, 60s);
            if (item.producer < 0) return;
            if (item.payload != payload_for(item.producer, item.seq)) garbled = true;
            auto& list = received[static_cast<std::size_t>(item.producer)];
            if (!list.empty() && list.back() >= item.seq) duplicate_or_reordered = true;
            list.push_back(item.seq);
        }
    });

    std::mt19937 rng(12345);
    std::vector<mproc::Process> live;
    for (int p = 0; p < 2; ++p) live.emplace_back(produce_forever, q, marks, p).start();
    int next_id = 2;
    for (int k = 0; k < kKills; ++k) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2 + rng() % 25));
        auto& victim = live[rng() % live.size()];
        victim.kill();
        victim.join();
        EXPECT_EQ(victim.exitcode(), -9);
        victim = mproc::Process(produce_forever, q, marks, next_id++);
        victim.start();
    }
    for (auto& p : live) {
        p.kill();
        p.join();
    }
    // The queue works for a newcomer: all its messages arrive, after what the dead left.
    mproc::Process last(produce_some, q, kFinalProducer, kFinal);
    last.start();
    last.join(60s);
    ASSERT_EQ(last.exitcode(), 0);
    q.put(Item{-1, 0, {}});
    consumer.join();

    EXPECT_FALSE(garbled) << "a message arrived garbled";
    EXPECT_FALSE(duplicate_or_reordered) << "a message arrived twice or out of order";
    EXPECT_EQ(received[kFinalProducer].size(), static_cast<std::size_t>(kFinal));
    for (int p = 0; p < next_id; ++p) {
        const auto& got = received[static_cast<std::size_t>(p)];
        const int mark = std::atomic_ref<int>(marks[p]).load();
        // In order and without gaps (checked above: strictly increasing; here: from 0, dense).
        for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], static_cast<int>(i)) << "gap, producer " << p;
        EXPECT_GE(static_cast<int>(got.size()), mark) << "producer " << p << " lost a message whose put() returned";
        EXPECT_LE(static_cast<int>(got.size()), mark + 1) << "producer " << p;
    }
    EXPECT_THROW(q.get_nowait(), mproc::Empty);
    mproc::set_start_method(std::nullopt, true);
}

// Gets messages until told to stop; counts[producer * span + seq] += 1 for each.
void consume_counting(mproc::Queue<Item> q, mproc::RawArray<int> counts, mproc::RawArray<int> garbled, int span) {
    for (;;) {
        Item item = q.get();
        if (item.producer < 0) return;
        if (item.payload != payload_for(item.producer, item.seq)) std::atomic_ref<int>(garbled[0]).fetch_add(1);
        std::atomic_ref<int>(counts[static_cast<std::size_t>(item.producer * span + item.seq)]).fetch_add(1);
    }
}

// Consumers are killed at random while a producer in this process puts messages (some in
// chunks): no message is delivered twice, none garbled, at most one lost per killed consumer,
// and the consumers that remain drain the queue.
TEST_F(QueueFaults, ConsumersKilledMidGetLoseAtMostTheMessageTheyWereTaking) {
    // Replacement consumers start while the producer thread is at work: forked from this process,
    // one could inherit an allocator lock that thread holds, and AddressSanitizer's allocator
    // (before LLVM 18) never releases it in the child. Spawn starts a fresh program instead.
    mproc::set_start_method("spawn", true);
    constexpr int kMessages = 6000, kProducers = 1;
    mproc::Queue<Item> q(0, kSmallBuffer);
    mproc::RawArray<int> counts(kMessages * kProducers);
    mproc::RawArray<int> garbled(1);

    std::vector<mproc::Process> consumers;
    for (int c = 0; c < 3; ++c) consumers.emplace_back(consume_counting, q, counts, garbled, kMessages).start();
    // Three kills while messages flow, however slowly a loaded machine forks: the producer waits
    // for each (one per 400 messages).
    constexpr int kKills = 3, kPerKill = 400;
    std::atomic<int> kills{0};
    std::atomic<bool> producing{true};
    std::thread producer([&] {
        for (int seq = 0; seq < kMessages; ++seq) {
            if (seq % kPerKill == 0 && seq / kPerKill <= kKills)
                mproc::testing::eventually([&] { return kills.load() >= seq / kPerKill; }, 60s);
            q.put(Item{0, seq, payload_for(0, seq)});
            if (seq % 40 == 0) std::this_thread::sleep_for(1ms);  // a pace, not a wait: kills land mid-get
        }
        producing = false;
    });
    std::mt19937 rng(777);
    while (producing && kills < kKills) {
        std::this_thread::sleep_for(std::chrono::milliseconds(3 + rng() % 20));
        auto& victim = consumers[rng() % consumers.size()];
        victim.kill();
        victim.join();
        ++kills;
        victim = mproc::Process(consume_counting, q, counts, garbled, kMessages);
        victim.start();
    }
    producer.join();
    // Every message left in the queue is taken by the live consumers.
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (q.qsize() > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    EXPECT_EQ(q.qsize(), 0) << "the live consumers stopped taking messages";
    for (std::size_t c = 0; c < consumers.size(); ++c) q.put(Item{-1, 0, {}});
    for (auto& c : consumers) {
        c.join(30s);
        EXPECT_EQ(c.exitcode(), 0);
    }
    EXPECT_EQ(garbled[0], 0) << "a consumer saw a garbled message";
    int missing = 0;
    for (int i = 0; i < kMessages; ++i) {
        ASSERT_LE(counts[static_cast<std::size_t>(i)], 1) << "message " << i << " delivered twice";
        if (counts[static_cast<std::size_t>(i)] == 0) ++missing;
    }
    EXPECT_LE(missing, kills.load()) << "more messages lost than consumers killed";
    std::printf("%d consumers killed, %d messages lost\n", kills.load(), missing);
    mproc::set_start_method(std::nullopt, true);
}

// A producer killed while it writes a message in chunks: the consumer reassembling it finds out
// (the lock's owner died), drops the message and goes on to the next one instead of waiting.
void stream_into_full_buffer(mproc::Queue<std::string> q) {
    q.put(std::string(1 << 20, 'x'));  // far larger than the buffer, and nobody reads yet
}

TEST_F(QueueFaults, ProducerKilledMidMessageDoesNotStrandTheConsumer) {
    mproc::set_start_method("fork", true);
    mproc::Queue<std::string> q(1, kSmallBuffer);  // bounded: put() streams by itself
    mproc::Process producer(stream_into_full_buffer, q);
    producer.start();
    // The buffer is full of first chunks when the producer sleeps, waiting for room.
    ASSERT_TRUE(mproc::testing::wait_until_blocked(*producer.pid()));
    producer.kill();
    producer.join();
    std::atomic<bool> got_after{false};
    std::atomic<pid_t> consumer_tid{0};
    std::thread consumer([&] {
        consumer_tid = mproc::testing::this_thread_id();
        EXPECT_EQ(q.get(true, 60s), "after");
        got_after = true;
    });
    // The consumer has taken the chunks in the buffer and sleeps, waiting for the rest (it looks
    // for the dead producer every 100 ms) or, having noticed the death, for the next message.
    // Either way the next put must not be mistaken for the rest of the dead message.
    ASSERT_TRUE(mproc::testing::eventually([&] { return consumer_tid != 0; }));
    ASSERT_TRUE(mproc::testing::wait_until_blocked(consumer_tid));
    q.put("after", true, 10s);
    consumer.join();
    EXPECT_TRUE(got_after);
    EXPECT_THROW(q.get_nowait(), mproc::Empty);
    mproc::set_start_method(std::nullopt, true);
}

}  // namespace
