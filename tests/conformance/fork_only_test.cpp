// What only the fork start method offers: the child is a copy of the parent, so targets may
// capture anything and use the parent's objects and descriptors. Also the naming rules, which do
// not depend on a start method.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "helpers/test_helpers.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"

using namespace std::chrono_literals;

namespace {

namespace inner {
template <class T>
struct Consumer : mproc::Process {};
}  // namespace inner

struct Renamed : mproc::Process {
protected:
    std::string type_name() const override { return "Custom"; }
};

}  // namespace

TEST(ForkOnly, CapturingLambdasAndReferencesWork) {
    std::string captured = "abc";
    int base = 39;
    auto p = mproc::fork_context.Process([captured, &base] { mproc::exit(base + static_cast<int>(captured.size())); });
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 42);
}

TEST(ForkOnly, InheritedDescriptorsWork) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    auto p = mproc::fork_context.Process([w = fds[1]] { (void)!::write(w, "hello", 5); });
    p.start();
    ::close(fds[1]);
    p.join();
    char buf[8] = {};
    EXPECT_EQ(::read(fds[0], buf, sizeof buf), 5);
    EXPECT_STREQ(buf, "hello");
    ::close(fds[0]);
}

TEST(ForkOnly, UncaughtExceptionIsReportedOnStderr) {
    mproc::testing::CapturedStderr err;
    auto p = mproc::fork_context.Process({.name = "raises"}, [] { throw std::runtime_error("There was an error!"); });
    p.start();
    p.join();
    std::string text = err.text();
    EXPECT_EQ(p.exitcode(), 1);
    EXPECT_NE(text.find("Process raises:\nstd::runtime_error: There was an error!\n"), std::string::npos) << text;
}

TEST(ForkOnly, MisuseFromAChild) {
    auto created_by_parent = mproc::fork_context.Process([] {});
    auto p = mproc::fork_context.Process([&created_by_parent] {
        try {
            created_by_parent.start();
            mproc::exit(1);
        } catch (const mproc::UsageError& e) {
            if (std::string(e.what()) != "can only start a process object created by current process") mproc::exit(2);
        }
        try {
            created_by_parent.join();
            mproc::exit(3);
        } catch (const mproc::UsageError& e) {
            if (std::string(e.what()) != "can only join a child process") mproc::exit(4);
        }
        mproc::exit(0);
    });
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST(Names, DefaultNamesCountConstructions) {
    mproc::Process a;
    mproc::Process b({.name = "named"});
    mproc::Process c;
    const std::string a_name = a.name();
    ASSERT_EQ(a_name.rfind("Process-", 0), 0u) << a_name;
    int first = std::stoi(a_name.substr(8));
    EXPECT_EQ(b.name(), "named");  // an explicit name still consumes a number
    EXPECT_EQ(c.name(), "Process-" + std::to_string(first + 2));
    c.set_name("renamed");
    EXPECT_EQ(c.name(), "renamed");
}

TEST(Names, SubclassNamesUseTheClassName) {
    inner::Consumer<int> c;
    EXPECT_EQ(c.name().rfind("Consumer-", 0), 0u) << c.name();
    Renamed r;
    EXPECT_EQ(r.name().rfind("Custom-", 0), 0u) << r.name();
    EXPECT_EQ(r.repr().rfind("<Custom name='Custom-", 0), 0u) << r.repr();
    mproc::Process d({.name = "it's", .daemon = true});
    EXPECT_EQ(d.repr(), "<Process name=\"it's\" parent=" + std::to_string(::getpid()) + " initial daemon>");
    EXPECT_EQ(mproc::current_process().repr(), "<_MainProcess name='MainProcess' parent=None started>");
}

TEST(Names, CurrentProcessInTheMainProcess) {
    EXPECT_EQ(mproc::current_process().name(), "MainProcess");
    EXPECT_EQ(mproc::current_process().pid(), ::getpid());
    EXPECT_TRUE(mproc::current_process().is_alive());
    EXPECT_FALSE(mproc::parent_process().has_value());
    EXPECT_FALSE(mproc::current_process().daemon());
}
