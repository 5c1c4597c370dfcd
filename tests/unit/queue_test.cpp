// Queue, SimpleQueue and JoinableQueue within one process (threads as producers and consumers):
// Python's semantics, messages larger than the buffer, the feeder, misuse, type mismatches.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "mproc/queue.hpp"

using namespace std::chrono_literals;

namespace {

constexpr mproc::QueueOptions kSmallBuffer{.buffer_size = 4096};

TEST(Queue, PutGetKeepsOrderAndValues) {
    mproc::Queue<std::string> q;
    for (int i = 0; i < 100; ++i) q.put("message " + std::to_string(i));
    EXPECT_EQ(q.qsize(), 100);
    EXPECT_FALSE(q.empty());
    for (int i = 0; i < 100; ++i) EXPECT_EQ(q.get(), "message " + std::to_string(i));
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.qsize(), 0);
}

TEST(Queue, StructuredValuesRoundTrip) {
    using Value = std::map<std::string, std::vector<int>>;
    mproc::Queue<Value> q;
    Value v{{"a", {1, 2, 3}}, {"b", {}}};
    q.put(v);
    EXPECT_EQ(q.get(), v);
}

TEST(Queue, GetNowaitOnEmptyRaisesEmpty) {
    mproc::Queue<int> q;
    EXPECT_THROW(q.get_nowait(), mproc::Empty);
    EXPECT_THROW(q.get(false), mproc::Empty);
    q.put(7);
    EXPECT_EQ(q.get_nowait(), 7);
}

TEST(Queue, GetTimeoutWaitsAboutThatLong) {
    mproc::Queue<int> q;
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(q.get(true, 100ms), mproc::Empty);
    const auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_GE(waited, 100ms);
    EXPECT_LT(waited, 5s);
}

TEST(Queue, BoundedQueueIsFullAtMaxsize) {
    mproc::Queue<int> q(2);
    EXPECT_EQ(q.maxsize(), 2);
    q.put(1);
    q.put(2);
    EXPECT_TRUE(q.full());
    EXPECT_THROW(q.put_nowait(3), mproc::Full);
    EXPECT_THROW(q.put(3, true, 50ms), mproc::Full);
    EXPECT_EQ(q.get(), 1);
    EXPECT_FALSE(q.full());
    q.put_nowait(3);
    EXPECT_EQ(q.get(), 2);
    EXPECT_EQ(q.get(), 3);
}

TEST(Queue, BoundedPutBlocksUntilAConsumerTakesOne) {
    mproc::Queue<int> q(1);
    q.put(1);
    std::atomic<bool> put_done{false};
    std::atomic<pid_t> tid{0};
    std::thread producer([&] {
        tid = mproc::testing::this_thread_id();
        q.put(2);
        put_done = true;
    });
    ASSERT_TRUE(mproc::testing::eventually([&] { return tid != 0; }));
    ASSERT_TRUE(mproc::testing::wait_until_blocked(tid));  // asleep in put()
    EXPECT_FALSE(put_done);
    EXPECT_EQ(q.get(), 1);
    producer.join();
    EXPECT_TRUE(put_done);
    EXPECT_EQ(q.get(), 2);
}

TEST(Queue, UnboundedPutNeverBlocksWhenTheBufferIsFull) {
    mproc::Queue<std::vector<int>> q(0, kSmallBuffer);
    const std::vector<int> item(100, 42);
    // Far more than 4 KiB: the rest waits for the feeder thread.
    for (int i = 0; i < 500; ++i) q.put(item);
    for (int i = 0; i < 500; ++i) ASSERT_EQ(q.get(true, 10s), item) << i;
    EXPECT_THROW(q.get_nowait(), mproc::Empty);
}

TEST(Queue, MessagesLargerThanTheBufferGoThrough) {
    mproc::Queue<std::vector<std::uint32_t>> q(0, kSmallBuffer);
    std::vector<std::uint32_t> big(1 << 20);  // 4 MiB through a 4 KiB ring
    std::iota(big.begin(), big.end(), 0u);
    std::thread consumer([&] { EXPECT_EQ(q.get(true, 30s), big); });
    q.put(big);
    consumer.join();
}

TEST(Queue, LargeAndSmallMessagesInterleaveInOrder) {
    mproc::Queue<std::string> q(0, kSmallBuffer);
    std::vector<std::string> sent;
    for (int i = 0; i < 40; ++i) sent.push_back(std::string(i % 3 == 0 ? 10000 + i : 5 + i, static_cast<char>('a' + i % 26)));
    std::thread producer([&] {
        for (auto& s : sent) q.put(s);
    });
    for (auto& s : sent) ASSERT_EQ(q.get(true, 30s), s);
    producer.join();
}

TEST(Queue, BoundedQueueCarriesLargeMessages) {
    mproc::Queue<std::string> q(1, kSmallBuffer);
    const std::string big(100000, 'x');
    std::thread consumer([&] {
        for (int i = 0; i < 3; ++i) EXPECT_EQ(q.get(true, 30s), big);
    });
    for (int i = 0; i < 3; ++i) q.put(big);
    consumer.join();
}

TEST(Queue, BoundedPutOfALargeMessageTimesOutWithoutAConsumer) {
    mproc::Queue<std::string> q(1, kSmallBuffer);
    EXPECT_THROW(q.put(std::string(100000, 'x'), true, 100ms), mproc::Full);
    // The abandoned message left nothing behind: the next one arrives alone.
    q.put("after");
    EXPECT_EQ(q.get(true, 5s), "after");
    EXPECT_THROW(q.get_nowait(), mproc::Empty);
}

TEST(Queue, ManyProducersManyConsumersEveryMessageOnce) {
    mproc::Queue<std::pair<int, int>> q(0, mproc::QueueOptions{.buffer_size = 16384});
    constexpr int kProducers = 4, kConsumers = 3, kEach = 20000;
    std::vector<std::thread> threads;
    std::vector<std::vector<std::pair<int, int>>> received(kConsumers);
    for (int p = 0; p < kProducers; ++p)
        threads.emplace_back([&, p] {
            for (int i = 0; i < kEach; ++i) q.put({p, i});
        });
    std::atomic<int> remaining{kProducers * kEach};
    for (int c = 0; c < kConsumers; ++c)
        threads.emplace_back([&, c] {
            while (remaining.fetch_sub(1) > 0) received[c].push_back(q.get(true, 30s));
        });
    for (auto& t : threads) t.join();
    std::vector<int> next(kProducers, 0);
    std::vector<std::vector<bool>> seen(kProducers, std::vector<bool>(kEach, false));
    for (auto& list : received) {
        std::vector<int> last(kProducers, -1);
        for (auto [p, i] : list) {
            ASSERT_FALSE(seen[p][i]) << "duplicate " << p << "/" << i;
            seen[p][i] = true;
            ASSERT_GT(i, last[p]) << "order of producer " << p << " broken for one consumer";
            last[p] = i;
        }
    }
    for (int p = 0; p < kProducers; ++p)
        for (int i = 0; i < kEach; ++i) ASSERT_TRUE(seen[p][i]) << "lost " << p << "/" << i;
}

TEST(Queue, WrongTypeIsADecodeErrorAndTheQueueGoesOn) {
    mproc::Queue<int> q;
    q.put(1);
    q.put(2);
    auto as_string = q.rebind<std::string>();
    try {
        as_string.get();
        FAIL() << "no DecodeError";
    } catch (const mproc::DecodeError& e) {
        EXPECT_NE(std::string(e.what()).find("int"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("std::"), std::string::npos) << e.what();
    }
    EXPECT_EQ(q.get(), 2);
    as_string.put("text");
    EXPECT_EQ(as_string.get(), "text");
}

TEST(Queue, CloseRefusesPutAndGet) {
    mproc::Queue<int> q;
    EXPECT_THROW(q.join_thread(), mproc::UsageError);
    q.close();
    try {
        q.put(1);
        FAIL();
    } catch (const mproc::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("is closed"), std::string::npos);
    }
    EXPECT_THROW(q.get_nowait(), mproc::UsageError);
    q.join_thread();
}

TEST(Queue, MovedFromHandleIsAUsageError) {
    mproc::Queue<int> q;
    mproc::Queue<int> other = std::move(q);
    EXPECT_THROW(q.put(1), mproc::UsageError);  // NOLINT(bugprone-use-after-move)
    other.put(1);
    EXPECT_EQ(other.get(), 1);
}

// Arguments decoded in a spawned child are default-constructed, then loaded: a default Queue made
// then must not allocate a ring only to drop it (and is empty until loaded).
TEST(Queue, DefaultConstructionWhileDecodingArgumentsAllocatesNothing) {
    {
        const mproc::detail::ArgumentDecoding scope;
        mproc::Queue<int> placeholder;
        EXPECT_THROW(placeholder.put(1), mproc::UsageError);
        mproc::Queue<int> explicit_one(0);  // constructed on purpose: a real queue
        explicit_one.put(1);
        EXPECT_EQ(explicit_one.get(), 1);
    }
    mproc::Queue<int> outside;
    outside.put(2);
    EXPECT_EQ(outside.get(), 2);
}

TEST(Queue, ReprNamesTheQueue) {
    mproc::Queue<int> q;
    EXPECT_EQ(q.repr().rfind("<Queue object at 0x", 0), 0u) << q.repr();
}

TEST(SimpleQueue, PutGetEmpty) {
    mproc::SimpleQueue<std::string> q(kSmallBuffer);
    EXPECT_TRUE(q.empty());
    q.put("a");
    EXPECT_FALSE(q.empty());
    EXPECT_EQ(q.get(), "a");
    std::thread producer([&] {
        for (int i = 0; i < 2000; ++i) q.put(std::to_string(i));
    });
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(q.get(), std::to_string(i));
    producer.join();
    q.close();
    EXPECT_THROW(q.put("b"), mproc::UsageError);
}

TEST(JoinableQueue, JoinWaitsForEveryTaskDone) {
    mproc::JoinableQueue<int> q;
    for (int i = 0; i < 5; ++i) q.put(i);
    std::atomic<int> done{0};
    const pid_t joiner = mproc::testing::this_thread_id();
    std::thread worker([&] {
        for (int i = 0; i < 5; ++i) {
            q.get();
            // The last task is finished only once join() sleeps: join must wait for it.
            if (i == 4) {
                EXPECT_TRUE(mproc::testing::wait_until_blocked(joiner));
            }
            ++done;
            q.task_done();
        }
    });
    q.join();
    EXPECT_EQ(done.load(), 5);
    worker.join();
}

TEST(JoinableQueue, TooManyTaskDoneIsAUsageError) {
    mproc::JoinableQueue<int> q;
    q.put(1);
    q.get();
    q.task_done();
    try {
        q.task_done();
        FAIL();
    } catch (const mproc::UsageError& e) {
        EXPECT_STREQ(e.what(), "task_done() called too many times");
    }
    q.join();  // nothing unfinished: returns at once
}

TEST(JoinableQueue, FullPutDoesNotCountAsUnfinished) {
    mproc::JoinableQueue<int> q(1);
    q.put(1);
    EXPECT_THROW(q.put_nowait(2), mproc::Full);
    q.get();
    q.task_done();
    q.join();
}

TEST(QueueOptions, BufferSizeIsRoundedAndBounded) {
    EXPECT_THROW(mproc::Queue<int>(0, mproc::QueueOptions{.buffer_size = std::size_t{1} << 40}), mproc::UsageError);
    mproc::Queue<int> tiny(0, mproc::QueueOptions{.buffer_size = 1});
    for (int i = 0; i < 1000; ++i) tiny.put(i);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(tiny.get(true, 10s), i);
}

}  // namespace
