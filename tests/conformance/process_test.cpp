// Process: the behaviour of Python's multiprocessing.Process section (spec/python_api.md §1).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>

#include "helpers/test_helpers.hpp"
#include "mproc/process.hpp"

using namespace std::chrono_literals;

namespace {

// Runs `body` in a child and returns its exit code: the child's way to report a check.
template <class F>
int exitcode_of(F&& body) {
    mproc::Process p(std::forward<F>(body));
    p.start();
    p.join();
    return p.exitcode().value();
}

#define EXPECT_USAGE_ERROR(statement, message)                         \
    do {                                                               \
        try {                                                          \
            statement;                                                 \
            ADD_FAILURE() << "expected UsageError: " << (message);     \
        } catch (const mproc::UsageError& e) {                         \
            EXPECT_STREQ(e.what(), message);                           \
        }                                                              \
    } while (0)

struct Worker : mproc::Process {
    void run() override { mproc::exit(name() == "Worker-" + std::to_string(expected_number) ? 0 : 1); }
    int expected_number = 0;
};

namespace inner {
template <class T>
struct Consumer : mproc::Process {};
}  // namespace inner

struct Renamed : mproc::Process {
protected:
    std::string type_name() const override { return "Custom"; }
};

}  // namespace

TEST(Process, StartJoinGivesExitcodeZero) {
    mproc::Process p([] {});
    EXPECT_FALSE(p.exitcode().has_value());
    EXPECT_FALSE(p.pid().has_value());
    p.start();
    ASSERT_TRUE(p.pid().has_value());
    EXPECT_GT(*p.pid(), 0);
    EXPECT_EQ(p.ident(), p.pid());
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_FALSE(p.is_alive());
    p.join();  // joining again is allowed
    EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, ArgumentsAndCapturesReachTheChild) {
    std::string captured = "abc";
    mproc::Process p([captured](int a, const std::string& s) { mproc::exit(a + static_cast<int>(s.size() + captured.size())); },
                     37, std::string("xy"));
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 42);
}

void free_function_target(int a, int b) { mproc::exit(a * b); }

TEST(Process, FreeFunctionTarget) {
    mproc::Process p(free_function_target, 6, 7);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 42);
}

TEST(Process, TargetArgumentsAreDecayCopied) {
    std::string text = "four";
    int base = 38;
    mproc::Process p([&base](const std::string& s) { mproc::exit(base + static_cast<int>(s.size())); }, text);
    text = "changed after construction";  // the Process holds its own copy
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 42);
}

TEST(Process, ReturnValueIsDiscarded) {
    EXPECT_EQ(exitcode_of([] { return 17; }), 0);
}

TEST(Process, ExitCodesFollowPython) {
    EXPECT_EQ(exitcode_of([] { mproc::exit(3); }), 3);
    EXPECT_EQ(exitcode_of([] { mproc::exit(); }), 0);
    EXPECT_EQ(exitcode_of([] { mproc::exit(256); }), 0);
    EXPECT_EQ(exitcode_of([] { mproc::exit(-1); }), 255);
    EXPECT_EQ(exitcode_of([] { std::exit(7); }), 7);
    EXPECT_EQ(exitcode_of([] { ::_exit(9); }), 9);
    EXPECT_EQ(exitcode_of([] { std::raise(SIGSEGV); }), -SIGSEGV);
    EXPECT_EQ(exitcode_of([] { std::abort(); }), -SIGABRT);
}

TEST(Process, ExitRequestUnwindsTheChildStack) {
    // Destructors on the child's stack run before it exits, as `finally` blocks do for SystemExit.
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    mproc::Process p([w = fds[1]] {
        struct Guard {
            int fd;
            ~Guard() { (void)!::write(fd, "u", 1); }
        } guard{w};
        mproc::exit(4);
    });
    p.start();
    ::close(fds[1]);
    p.join();
    char c = 0;
    EXPECT_EQ(::read(fds[0], &c, 1), 1);
    EXPECT_EQ(c, 'u');
    ::close(fds[0]);
    EXPECT_EQ(p.exitcode(), 4);
}

TEST(Process, UncaughtExceptionGivesOneAndIsReported) {
    mproc::testing::CapturedStderr err;
    mproc::Process p({.name = "raises"}, [] { throw std::runtime_error("There was an error!"); });
    p.start();
    p.join();
    std::string text = err.text();
    EXPECT_EQ(p.exitcode(), 1);
    EXPECT_NE(text.find("Process raises:\nstd::runtime_error: There was an error!\n"), std::string::npos) << text;
}

TEST(Process, SignalsGiveNegativeExitcodes) {
    mproc::Process t([] { std::this_thread::sleep_for(30s); });
    t.start();
    t.terminate();
    t.join();
    EXPECT_EQ(t.exitcode(), -SIGTERM);

    mproc::Process k([] { std::this_thread::sleep_for(30s); });
    k.start();
    k.kill();
    k.join();
    EXPECT_EQ(k.exitcode(), -SIGKILL);

    mproc::Process i([] { std::this_thread::sleep_for(30s); });
    i.start();
    i.interrupt();
    i.join();
    EXPECT_EQ(i.exitcode(), -SIGINT);

    t.terminate();  // signalling an ended, reaped process is harmless
    EXPECT_EQ(t.exitcode(), -SIGTERM);
}

TEST(Process, JoinWithTimeoutReturnsWhileChildRuns) {
    mproc::Process p([] { std::this_thread::sleep_for(30s); });
    p.start();
    auto begin = std::chrono::steady_clock::now();
    p.join(100ms);
    auto waited = std::chrono::steady_clock::now() - begin;
    EXPECT_GE(waited, 100ms);
    EXPECT_TRUE(p.is_alive());
    EXPECT_FALSE(p.exitcode().has_value());
    p.join(0s);
    EXPECT_TRUE(p.is_alive());
    p.kill();
    p.join(10s);
    EXPECT_FALSE(p.is_alive());
    EXPECT_EQ(p.exitcode(), -SIGKILL);
}

TEST(Process, SentinelBecomesReadableWhenTheChildEnds) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    mproc::Process p([r = fds[0]] {
        char c;
        (void)!::read(r, &c, 1);
    });
    p.start();
    pollfd pfd{p.sentinel(), POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 50), 0) << "sentinel ready while the child runs";
    ASSERT_EQ(::write(fds[1], "x", 1), 1);
    EXPECT_EQ(::poll(&pfd, 1, 10'000), 1);
    ::close(fds[0]);
    ::close(fds[1]);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, DefaultNamesCountConstructions) {
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

TEST(Process, SubclassNamesUseTheClassName) {
    Worker w;
    const std::string name = w.name();
    ASSERT_EQ(name.rfind("Worker-", 0), 0u) << name;
    w.expected_number = std::stoi(name.substr(7));
    w.start();
    w.join();
    EXPECT_EQ(w.exitcode(), 0) << "the child saw another name";

    inner::Consumer<int> c;
    EXPECT_EQ(c.name().rfind("Consumer-", 0), 0u) << c.name();
    Renamed r;
    EXPECT_EQ(r.name().rfind("Custom-", 0), 0u) << r.name();
    EXPECT_EQ(r.repr().rfind("<Custom name='Custom-", 0), 0u) << r.repr();
}

TEST(Process, ChildrenOfChildrenAreNumberedFromTheirParent) {
    mproc::Process p([] {
        mproc::Process grandchild;
        mproc::Process second;
        const std::string me = mproc::current_process().name();
        bool ok = grandchild.name() == me + ":1" && second.name() == me + ":2";
        mproc::exit(ok ? 0 : 1);
    });
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, CurrentAndParentProcess) {
    EXPECT_EQ(mproc::current_process().name(), "MainProcess");
    EXPECT_EQ(mproc::current_process().pid(), ::getpid());
    EXPECT_TRUE(mproc::current_process().is_alive());
    EXPECT_FALSE(mproc::parent_process().has_value());
    EXPECT_FALSE(mproc::current_process().daemon());

    const int parent_pid = ::getpid();
    mproc::Process p({.name = "inspector"}, [parent_pid] {
        auto& me = mproc::current_process();
        if (me.name() != "inspector") mproc::exit(10);
        if (me.pid() != ::getpid()) mproc::exit(11);
        auto parent = mproc::parent_process();
        if (!parent) mproc::exit(12);
        if (parent->name() != "MainProcess") mproc::exit(13);
        if (parent->pid() != parent_pid) mproc::exit(14);
        if (!parent->is_alive()) mproc::exit(15);
        if (!mproc::active_children().empty()) mproc::exit(16);  // siblings are not children
        mproc::exit(0);
    });
    mproc::Process sibling([] { std::this_thread::sleep_for(2s); });
    sibling.start();
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    sibling.kill();
    sibling.join();
}

TEST(Process, ParentProcessSentinelReportsTheParentsDeath) {
    // A middle process starts a grandchild, then ends; the grandchild watches its parent end.
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    mproc::Process middle([w = fds[1]] {
        mproc::Process watcher([w] {
            auto parent = mproc::parent_process();
            parent->join(10s);  // waits on the parent's sentinel
            char verdict = parent->is_alive() ? 'A' : 'D';
            (void)!::write(w, &verdict, 1);
        });
        watcher.start();
        ::_exit(0);  // end without joining the watcher
    });
    middle.start();
    ::close(fds[1]);
    middle.join();
    char verdict = 0;
    ASSERT_EQ(::read(fds[0], &verdict, 1), 1);
    EXPECT_EQ(verdict, 'D');
    ::close(fds[0]);
}

TEST(Process, ActiveChildrenListsLiveChildrenAndReapsEnded) {
    mproc::Process sleeper([] { std::this_thread::sleep_for(30s); });
    mproc::Process quick([] {});
    sleeper.start();
    quick.start();
    while (quick.is_alive()) std::this_thread::sleep_for(1ms);
    auto children = mproc::active_children();
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0].pid(), sleeper.pid());
    EXPECT_EQ(children[0].name(), sleeper.name());
    sleeper.kill();
    sleeper.join();
    EXPECT_TRUE(mproc::active_children().empty());
}

TEST(Process, DroppedHandleKeepsTheChildKnown) {
    int pid = 0;
    {
        mproc::Process p([] { std::this_thread::sleep_for(30s); });
        p.start();
        pid = *p.pid();
    }
    auto children = mproc::active_children();
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0].pid(), pid);
    EXPECT_TRUE(children[0].is_alive()) << "destroying the handle must not kill the child";
    children[0].kill();
    children[0].join();
    EXPECT_EQ(children[0].exitcode(), -SIGKILL);
}

TEST(Process, ReprFollowsPython311) {
    mproc::Process p([] { std::this_thread::sleep_for(30s); });
    const std::string parent = std::to_string(::getpid());
    const std::string name = p.name();
    EXPECT_EQ(p.repr(), "<Process name='" + name + "' parent=" + parent + " initial>");
    p.start();
    const std::string pid = std::to_string(*p.pid());
    EXPECT_EQ(p.repr(), "<Process name='" + name + "' pid=" + pid + " parent=" + parent + " started>");
    p.terminate();
    p.join();
    EXPECT_EQ(p.repr(), "<Process name='" + name + "' pid=" + pid + " parent=" + parent + " stopped exitcode=-SIGTERM>");
    p.close();
    EXPECT_EQ(p.repr(), "<Process name='" + name + "' pid=" + pid + " parent=" + parent + " closed>");

    mproc::Process d({.name = "it's", .daemon = true});
    EXPECT_EQ(d.repr(), "<Process name=\"it's\" parent=" + parent + " initial daemon>");
    EXPECT_EQ(mproc::current_process().repr(), "<_MainProcess name='MainProcess' parent=None started>");

    mproc::Process ok([] {});
    ok.start();
    ok.join();
    EXPECT_NE(ok.repr().find(" stopped exitcode=0>"), std::string::npos) << ok.repr();
}

TEST(Process, MisuseRaisesUsageErrorWithPythonsMessage) {
    mproc::Process p([] { std::this_thread::sleep_for(30s); });
    EXPECT_USAGE_ERROR(p.join(), "can only join a started process");
    EXPECT_FALSE(p.is_alive());
    EXPECT_USAGE_ERROR(p.sentinel(), "process not started");
    EXPECT_USAGE_ERROR(p.terminate(), "can only send a signal to a started child process");
    p.start();
    EXPECT_USAGE_ERROR(p.start(), "cannot start a process twice");
    EXPECT_USAGE_ERROR(p.set_daemon(true), "process has already started");
    EXPECT_USAGE_ERROR(p.close(),
                       "Cannot close a process while it is still running. You should first call join() or terminate().");
    p.kill();
    p.join();
    p.close();
    p.close();  // closing twice is fine
    EXPECT_USAGE_ERROR(p.join(), "process object is closed");
    EXPECT_USAGE_ERROR(p.is_alive(), "process object is closed");
    EXPECT_USAGE_ERROR(p.pid(), "process object is closed");
    EXPECT_USAGE_ERROR(p.exitcode(), "process object is closed");
    EXPECT_USAGE_ERROR(p.sentinel(), "process object is closed");
    EXPECT_USAGE_ERROR(p.start(), "process object is closed");
    EXPECT_USAGE_ERROR(mproc::current_process().join(), "can only join a child process");
}

TEST(Process, MisuseFromAChild) {
    mproc::Process created_by_parent([] {});
    mproc::Process p([&created_by_parent] {
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

TEST(Process, DaemonicProcessesCannotHaveChildren) {
    mproc::Process d({.daemon = true}, [] {
        if (!mproc::current_process().daemon()) mproc::exit(5);
        mproc::Process grandchild([] {});
        if (!grandchild.daemon()) mproc::exit(6);  // the default is inherited
        try {
            grandchild.start();
        } catch (const mproc::UsageError& e) {
            mproc::exit(std::string(e.what()) == "daemonic processes are not allowed to have children" ? 0 : 7);
        }
        mproc::exit(8);
    });
    EXPECT_TRUE(d.daemon());
    d.start();
    d.join();
    EXPECT_EQ(d.exitcode(), 0);
}

TEST(Process, SetDaemonBeforeStart) {
    mproc::Process p([] { mproc::exit(mproc::current_process().daemon() ? 0 : 1); });
    EXPECT_FALSE(p.daemon());
    p.set_daemon(true);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST(Process, AuthkeyIsInherited) {
    mproc::AuthKey key = mproc::current_process().authkey();
    EXPECT_EQ(key.size(), 32u);
    EXPECT_EQ(mproc::current_process().authkey(), key) << "the key is made once";
    mproc::Process p([key] { mproc::exit(mproc::current_process().authkey() == key ? 0 : 1); });
    EXPECT_EQ(p.authkey(), key);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);

    mproc::AuthKey other("abracadabra");
    mproc::Process q([other] { mproc::exit(mproc::current_process().authkey() == other ? 0 : 1); });
    q.set_authkey(other);
    q.start();
    q.join();
    EXPECT_EQ(q.exitcode(), 0);
    EXPECT_FALSE(other == key);
}

TEST(Process, ChildStdinIsDevNull) {
    EXPECT_EQ(exitcode_of([] {
                  char buf[4];
                  mproc::exit(::read(STDIN_FILENO, buf, sizeof buf) == 0 ? 0 : 1);
              }),
              0);
}

TEST(Process, ConcurrentJoinAndPollFromThreads) {
    mproc::Process p([] { std::this_thread::sleep_for(200ms); });
    p.start();
    std::atomic<int> seen_dead{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&p, &seen_dead, i] {
            if (i % 2 == 0) {
                p.join();
            } else {
                while (p.is_alive()) std::this_thread::sleep_for(1ms);
            }
            if (p.exitcode() == 0) ++seen_dead;
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(seen_dead.load(), 4);
}
