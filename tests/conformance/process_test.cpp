// Process: the behaviour of Python's multiprocessing.Process section (spec/python_api.md §1),
// once per start method. Every target here can travel (functions, lambdas without captures,
// Encodable arguments); what only fork can do is in fork_only_test.cpp.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "helpers/test_helpers.hpp"
#include "mproc/connection.hpp"
#include "mproc/context.hpp"
#include "mproc/detail/descriptors.hpp"
#include "mproc/process.hpp"

using namespace std::chrono_literals;
using mproc::StartMethod;

namespace {

#define EXPECT_USAGE_ERROR(statement, message)                     \
    do {                                                           \
        try {                                                      \
            statement;                                             \
            ADD_FAILURE() << "expected UsageError: " << (message); \
        } catch (const mproc::UsageError& e) {                     \
            EXPECT_STREQ(e.what(), message);                       \
        }                                                          \
    } while (0)

class ProcessConformance : public ::testing::TestWithParam<StartMethod> {
protected:
    void SetUp() override { mproc::set_start_method(std::string(mproc::to_string(GetParam())), true); }
    void TearDown() override { mproc::set_start_method(std::nullopt, true); }

    // Runs `target(args...)` in a child and returns its exit code: the child's way to report.
    template <class F, class... Args>
    static int exitcode_of(F target, Args... args) {
        mproc::Process p(target, args...);
        p.start();
        p.join();
        return p.exitcode().value();
    }
};

std::string method_name(const ::testing::TestParamInfo<StartMethod>& info) {
    return std::string(mproc::to_string(info.param));
}

void sum_to_exitcode(int a, const std::string& s, const std::vector<int>& v) {
    int total = a + static_cast<int>(s.size());
    for (int x : v) total += x;
    mproc::exit(total);
}

void multiply_to_exitcode(int a, int b) { mproc::exit(a * b); }

struct Worker : mproc::Process {
    int expected_number = 0;
    void run() override { mproc::exit(name() == "Worker-" + std::to_string(expected_number) ? 0 : 1); }
    template <class Archive>
    void serialize(Archive& ar) {
        ar(expected_number);
    }
};
MPROC_REGISTER_PROCESS(Worker);

// An object that owns a descriptor, as a Connection or a Lock does: under fork it is inherited,
// under spawn and forkserver its descriptor travels with the start request.
struct WriteEnd {
    int fd = -1;
    template <class Archive>
    void save(Archive& ar) const {
        ar(mproc::detail::DescriptorRef{fd, "a WriteEnd"});
    }
    template <class Archive>
    void load(Archive& ar) {
        mproc::detail::DescriptorRef ref;
        ar(ref);
        fd = ref.fd;
    }
};

struct Unregistered : mproc::Process {
    void run() override {}
};

std::string temp_path(const char* tag) {
    return "/tmp/mproc-test-" + std::to_string(::getpid()) + "-" + tag;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::string text;
    std::getline(in, text);
    return text;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(StartMethods, ProcessConformance,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         method_name);

TEST_P(ProcessConformance, StartJoinGivesExitcodeZero) {
    mproc::Process p([] {});
    EXPECT_FALSE(p.exitcode().has_value());
    EXPECT_FALSE(p.pid().has_value());
    EXPECT_EQ(p.start_method(), GetParam());
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

TEST_P(ProcessConformance, ArgumentsReachTheChild) {
    EXPECT_EQ(exitcode_of(sum_to_exitcode, 30, std::string("xy"), std::vector<int>{4, 6}), 42);
    EXPECT_EQ(exitcode_of(multiply_to_exitcode, 6, 7), 42);
    EXPECT_EQ(exitcode_of([](double d, std::pair<int, int> p) { mproc::exit(static_cast<int>(d) + p.first * p.second); },
                          2.5, std::pair<int, int>{5, 8}),
              42);
}

TEST_P(ProcessConformance, ArgumentsAreCopiedAtConstruction) {
    std::string text = "four";
    mproc::Process p([](int base, const std::string& s) { mproc::exit(base + static_cast<int>(s.size())); }, 38, text);
    text = "changed after construction";
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 42);
}

TEST_P(ProcessConformance, ReturnValueIsDiscarded) {
    EXPECT_EQ(exitcode_of([] { return 17; }), 0);
}

TEST_P(ProcessConformance, ExitCodesFollowPython) {
    EXPECT_EQ(exitcode_of([] { mproc::exit(3); }), 3);
    EXPECT_EQ(exitcode_of([] { mproc::exit(); }), 0);
    EXPECT_EQ(exitcode_of([] { mproc::exit(256); }), 0);
    EXPECT_EQ(exitcode_of([] { mproc::exit(-1); }), 255);
    EXPECT_EQ(exitcode_of([] { std::exit(7); }), 7);
    EXPECT_EQ(exitcode_of([] { ::_exit(9); }), 9);
    EXPECT_EQ(exitcode_of([] { throw std::runtime_error("boom"); }), 1);
    EXPECT_EQ(exitcode_of([] { std::raise(SIGSEGV); }), -SIGSEGV);
    EXPECT_EQ(exitcode_of([] { std::abort(); }), -SIGABRT);
}

TEST_P(ProcessConformance, ExitRequestUnwindsTheChildStack) {
    // The guard's destructor runs during the unwinding and changes the exit code.
    EXPECT_EQ(exitcode_of([] {
                  struct Guard {
                      ~Guard() { ::_exit(77); }
                  } guard;
                  mproc::exit(4);
              }),
              77);
}

TEST_P(ProcessConformance, SignalsGiveNegativeExitcodes) {
    auto sleeper = [] { std::this_thread::sleep_for(30s); };
    mproc::Process t(sleeper), k(sleeper), i(sleeper);
    for (auto* p : {&t, &k, &i}) p->start();
    t.terminate();
    k.kill();
    i.interrupt();
    for (auto* p : {&t, &k, &i}) p->join();
    EXPECT_EQ(t.exitcode(), -SIGTERM);
    EXPECT_EQ(k.exitcode(), -SIGKILL);
    EXPECT_EQ(i.exitcode(), -SIGINT);
    t.terminate();  // signalling an ended, reaped process is harmless
    EXPECT_EQ(t.exitcode(), -SIGTERM);
}

TEST_P(ProcessConformance, JoinWithTimeoutReturnsWhileChildRuns) {
    mproc::Process p([] { std::this_thread::sleep_for(30s); });
    p.start();
    auto begin = std::chrono::steady_clock::now();
    p.join(100ms);
    EXPECT_GE(std::chrono::steady_clock::now() - begin, 100ms);
    EXPECT_TRUE(p.is_alive());
    EXPECT_FALSE(p.exitcode().has_value());
    p.join(0s);
    EXPECT_TRUE(p.is_alive());
    p.kill();
    p.join(10s);
    EXPECT_FALSE(p.is_alive());
    EXPECT_EQ(p.exitcode(), -SIGKILL);
}

TEST_P(ProcessConformance, SentinelBecomesReadableWhenTheChildEnds) {
    // The child runs until the parent has looked at the sentinel and lets it go.
    auto [gate_child, gate] = mproc::Pipe(false);
    mproc::Process p([](mproc::Connection gate) { gate.recv_bytes(); }, std::move(gate_child));
    p.start();
    pollfd pfd{p.sentinel(), POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 50), 0) << "sentinel ready while the child runs";
    gate.send_bytes(std::string_view("go"));
    EXPECT_EQ(::poll(&pfd, 1, 60'000), 1);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessConformance, SubclassesTravelWithTheirMembers) {
    Worker w;
    const std::string name = w.name();
    ASSERT_EQ(name.rfind("Worker-", 0), 0u) << name;
    w.expected_number = std::stoi(name.substr(7));
    w.start();
    w.join();
    EXPECT_EQ(w.exitcode(), 0) << "the child saw another name or member value";
}

TEST_P(ProcessConformance, ChildrenOfChildrenAreNumberedFromTheirParent) {
    EXPECT_EQ(exitcode_of([] {
                  mproc::Process grandchild([] { mproc::exit(5); });
                  mproc::Process second;
                  const std::string me = mproc::current_process().name();
                  if (grandchild.name() != me + ":1" || second.name() != me + ":2") mproc::exit(1);
                  grandchild.start();  // under the same start method as this child
                  grandchild.join();
                  mproc::exit(grandchild.exitcode() == 5 ? 0 : 2);
              }),
              0);
}

TEST_P(ProcessConformance, CurrentAndParentProcess) {
    mproc::Process sibling([] { std::this_thread::sleep_for(30s); });
    sibling.start();
    mproc::Process p(
        {.name = "inspector"},
        [](int parent_pid, StartMethod method) {
            auto& me = mproc::current_process();
            if (me.name() != "inspector") mproc::exit(10);
            if (me.pid() != ::getpid()) mproc::exit(11);
            auto parent = mproc::parent_process();
            if (!parent) mproc::exit(12);
            if (parent->name() != "MainProcess") mproc::exit(13);
            if (parent->pid() != parent_pid) mproc::exit(14);
            if (!parent->is_alive()) mproc::exit(15);
            if (!mproc::active_children().empty()) mproc::exit(16);  // siblings are not children
            if (me.start_method() != method) mproc::exit(17);
            mproc::exit(0);
        },
        static_cast<int>(::getpid()), GetParam());
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    sibling.kill();
    sibling.join();
}

TEST_P(ProcessConformance, ParentProcessSentinelReportsTheParentsDeath) {
    // A middle process starts a grandchild, then ends; the grandchild watches its parent end and
    // writes what it saw to a file.
    const std::string path = temp_path("parent-death");
    std::remove(path.c_str());
    mproc::Process middle(
        [](const std::string& file) {
            mproc::Process watcher(
                [](const std::string& out) {
                    auto parent = mproc::parent_process();
                    parent->join(10s);
                    std::ofstream(out) << (parent->is_alive() ? "alive" : "dead") << "\n";
                },
                file);
            watcher.start();
            ::_exit(0);  // end without joining the watcher
        },
        path);
    middle.start();
    middle.join();
    std::string verdict;
    for (int i = 0; i < 1000 && verdict.empty(); ++i) {
        verdict = read_file(path);
        if (verdict.empty()) std::this_thread::sleep_for(10ms);
    }
    std::remove(path.c_str());
    EXPECT_EQ(verdict, "dead");
}

TEST_P(ProcessConformance, ActiveChildrenListsLiveChildrenAndReapsEnded) {
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

TEST_P(ProcessConformance, DroppedHandleKeepsTheChildKnown) {
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

TEST_P(ProcessConformance, ReprFollowsPython311) {
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

    mproc::Process ok([] {});
    ok.start();
    ok.join();
    EXPECT_NE(ok.repr().find(" stopped exitcode=0>"), std::string::npos) << ok.repr();
}

TEST_P(ProcessConformance, MisuseRaisesUsageErrorWithPythonsMessage) {
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

TEST_P(ProcessConformance, DaemonicProcessesCannotHaveChildren) {
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

TEST_P(ProcessConformance, SetDaemonBeforeStart) {
    mproc::Process p([] { mproc::exit(mproc::current_process().daemon() ? 0 : 1); });
    EXPECT_FALSE(p.daemon());
    p.set_daemon(true);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessConformance, AuthkeyIsInherited) {
    mproc::AuthKey key = mproc::current_process().authkey();
    EXPECT_EQ(key.size(), 32u);
    EXPECT_EQ(mproc::current_process().authkey(), key) << "the key is made once";
    auto bytes_of = [](const mproc::AuthKey& k) { return std::vector<std::byte>(k.bytes().begin(), k.bytes().end()); };
    auto same_key = [](const std::vector<std::byte>& expected) {
        mproc::exit(mproc::current_process().authkey() == mproc::AuthKey(std::span<const std::byte>(expected)) ? 0 : 1);
    };
    mproc::Process p(same_key, bytes_of(key));
    EXPECT_EQ(p.authkey(), key);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);

    mproc::AuthKey other("abracadabra");
    mproc::Process q(same_key, bytes_of(other));
    q.set_authkey(other);
    q.start();
    q.join();
    EXPECT_EQ(q.exitcode(), 0);
    EXPECT_FALSE(other == key);
}

TEST_P(ProcessConformance, ChildStdinIsDevNull) {
    EXPECT_EQ(exitcode_of([] {
                  char buf[4];
                  mproc::exit(::read(STDIN_FILENO, buf, sizeof buf) == 0 ? 0 : 1);
              }),
              0);
}

TEST_P(ProcessConformance, ConcurrentJoinAndPollFromThreads) {
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

TEST_P(ProcessConformance, WhatCannotTravelIsRefusedBeforeAnyProcessStarts) {
    const int fds_before = mproc::testing::count_open_fds();
    int captured = 3;
    mproc::Process capturing([captured] { mproc::exit(captured); });
    int* pointer = &captured;
    mproc::Process pointer_argument([](int* p) { mproc::exit(*p); }, pointer);
    Unregistered unregistered;
    if (GetParam() == StartMethod::fork) {
        for (auto* p : {&capturing, &pointer_argument, static_cast<mproc::Process*>(&unregistered)}) {
            p->start();
            p->join();
        }
        EXPECT_EQ(capturing.exitcode(), 3);
        EXPECT_EQ(pointer_argument.exitcode(), 3);
        EXPECT_EQ(unregistered.exitcode(), 0);
        return;
    }
    try {
        capturing.start();
        ADD_FAILURE() << "a capturing lambda was accepted";
    } catch (const mproc::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("only functions and lambdas without captures"), std::string::npos) << e.what();
    }
    try {
        pointer_argument.start();
        ADD_FAILURE() << "a pointer argument was accepted";
    } catch (const mproc::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("argument 1 of the target (int*) is not Encodable"), std::string::npos)
            << e.what();
    }
    try {
        unregistered.start();
        ADD_FAILURE() << "an unregistered subclass was accepted";
    } catch (const mproc::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("MPROC_REGISTER_PROCESS(Unregistered)"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(capturing.pid().has_value());
    EXPECT_TRUE(mproc::active_children().empty());
    EXPECT_TRUE(mproc::testing::zombie_children().empty());
    EXPECT_LE(mproc::testing::count_open_fds(), fds_before + 4);  // a started fork server and its pidfds
}

TEST_P(ProcessConformance, DescriptorsTravelAsArguments) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    mproc::Process writer(
        [](WriteEnd end, WriteEnd second) {
            bool ok = ::write(end.fd, "via ", 4) == 4 && ::write(second.fd, "descriptor", 10) == 10;
            mproc::exit(ok ? 0 : 1);
        },
        WriteEnd{fds[1]}, WriteEnd{fds[1]});
    writer.start();
    ::close(fds[1]);
    writer.join();
    EXPECT_EQ(writer.exitcode(), 0);
    std::string text(32, '\0');
    ssize_t n = ::read(fds[0], text.data(), text.size());
    ::close(fds[0]);
    ASSERT_GT(n, 0);
    text.resize(static_cast<std::size_t>(n));
    EXPECT_EQ(text, "via descriptor");
}

TEST(Descriptors, EncodingOneOutsideAChildStartIsRefused) {
    try {
        (void)mproc::dumps(WriteEnd{1});
        ADD_FAILURE() << "a descriptor was encoded outside a start request";
    } catch (const mproc::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("a WriteEnd can only be shared with a child process through inheritance"),
                  std::string::npos)
            << e.what();
    }
}
