// Managers under every start method: the server started with the method, proxies handed to
// children started with it.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "mproc/context.hpp"
#include "mproc/managers.hpp"

using namespace std::chrono_literals;
using mproc::StartMethod;

namespace {

class Tally {
public:
    void add(std::string word) { words_.push_back(std::move(word)); }
    std::vector<std::string> words() const { return words_; }

private:
    std::vector<std::string> words_;
};

void put_pair(mproc::DictProxy<int, int> d, int key) { d[key] = key * 2; }

void locked_increments(mproc::AcquirerProxy lock, mproc::ValueProxy<int> counter, int times) {
    for (int i = 0; i < times; ++i) {
        std::scoped_lock guard(lock);
        counter.set(counter.get() + 1);
    }
}

void produce(mproc::QueueProxy<std::string> q, int n) {
    for (int i = 0; i < n; ++i) q.put("item " + std::to_string(i));
}

void set_and_signal(mproc::Namespace ns, mproc::EventProxy ready) {
    ns.set("value", std::string("This is the value"));
    ready.set();
}

void add_word(mproc::Proxy tally, std::string word) { tally.call("add", word); }

class ManagerConformance : public ::testing::TestWithParam<StartMethod> {
protected:
    mproc::ManagerOptions options() const { return {.context = GetParam()}; }
    mproc::Process child_process(auto target, auto... args) const {
        return mproc::Process(mproc::ProcessOptions{.start_method = GetParam()}, target, args...);
    }
};

INSTANTIATE_TEST_SUITE_P(StartMethods, ManagerConformance,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         [](const auto& info) { return std::string(mproc::to_string(info.param)); });

TEST_P(ManagerConformance, ServerStartsAndStopsCleanly) {
    auto manager = mproc::Manager(options());
    auto server = *manager.process();
    EXPECT_EQ(server.start_method(), GetParam());
    EXPECT_EQ(server.name().rfind("SyncManager-", 0), 0u);
    auto d = manager.dict<int, int>();
    d[1] = 1;
    manager.shutdown();
    EXPECT_EQ(server.exitcode(), 0);
}

TEST_P(ManagerConformance, ChildrenFillADict) {
    auto manager = mproc::Manager(options());
    auto d = manager.dict<int, int>();
    std::vector<mproc::Process> jobs;
    for (int i = 0; i < 4; ++i) jobs.push_back(child_process(put_pair, d, i));
    for (auto& j : jobs) j.start();
    for (auto& j : jobs) j.join();
    for (auto& j : jobs) ASSERT_EQ(j.exitcode(), 0);
    auto items = d.copy();
    EXPECT_EQ(items, (std::map<int, int>{{0, 0}, {1, 2}, {2, 4}, {3, 6}}));
    // Each child released its reference when it ended: only the parent's is left.
    EXPECT_EQ(manager.number_of_objects(), 1u);
}

TEST_P(ManagerConformance, ManagedLockMakesIncrementsExact) {
    auto manager = mproc::Manager(options());
    auto lock = manager.Lock();
    auto counter = manager.Value<int>(0);
    auto a = child_process(locked_increments, lock, counter, 100);
    auto b = child_process(locked_increments, lock, counter, 100);
    a.start();
    b.start();
    a.join();
    b.join();
    EXPECT_EQ(counter.get(), 200);
}

TEST_P(ManagerConformance, QueueFromAChild) {
    auto manager = mproc::Manager(options());
    auto q = manager.Queue<std::string>();
    auto producer = child_process(produce, q, 3);
    producer.start();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(q.get(10s), "item " + std::to_string(i));
    producer.join();
    EXPECT_EQ(producer.exitcode(), 0);
}

TEST_P(ManagerConformance, NamespaceAndEventAcrossProcesses) {
    auto manager = mproc::Manager(options());
    auto ns = manager.Namespace();
    auto ready = manager.Event();
    auto producer = child_process(set_and_signal, ns, ready);
    producer.start();
    ASSERT_TRUE(ready.wait(10s));
    EXPECT_EQ(ns.get<std::string>("value"), "This is the value");
    producer.join();
}

TEST_P(ManagerConformance, RegisteredTypeInAServerOfThisMethod) {
    mproc::BaseManager manager(options());
    manager.register_type<Tally>("Tally").method<&Tally::add>("add").method<&Tally::words>("words");
    manager.start();
    auto tally = manager.create("Tally");
    auto child = child_process(add_word, tally, std::string("from the child"));
    child.start();
    child.join();
    ASSERT_EQ(child.exitcode(), 0);
    tally.call("add", std::string("from the parent"));
    EXPECT_EQ(tally.call<std::vector<std::string>>("words"),
              (std::vector<std::string>{"from the child", "from the parent"}));
}

}  // namespace
