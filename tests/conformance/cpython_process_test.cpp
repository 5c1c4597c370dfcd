// CPython's own tests of Process (Lib/test/_test_multiprocessing.py, _TestProcess and
// _TestSubclassingProcess), ported to mproc and run once per start method. Each test names the
// CPython test method it comes from; docs/differences.md lists where mproc deliberately differs.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "helpers/test_helpers.hpp"
#include "mproc/connection.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/synchronize.hpp"

using namespace std::chrono_literals;
using mproc::Connection;
using mproc::StartMethod;

namespace {

// Only a broken build waits this long; every wait ends as soon as its state is reached.
constexpr auto kPatience = 60s;

class CPythonProcess : public ::testing::TestWithParam<StartMethod> {
protected:
    void SetUp() override { mproc::set_start_method(std::string(mproc::to_string(GetParam())), true); }
    void TearDown() override { mproc::set_start_method(std::nullopt, true); }
};

INSTANTIATE_TEST_SUITE_P(StartMethods, CPythonProcess,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         [](const auto& info) { return std::string(mproc::to_string(info.param)); });

template <class E, class F>
void expect_throw_with(F&& statement, const std::string& message) {
    try {
        statement();
        ADD_FAILURE() << "expected an exception: " << message;
    } catch (const E& e) {
        EXPECT_EQ(std::string(e.what()), message);
    }
}

// What _TestProcess._test reports: the arguments, the name, the authkey and the pid, once the
// parent says go (Python's test holds its child with a queue of size 1).
void report_self(Connection& out, int a, int b) {
    static_cast<void>(out.recv<int>());
    const mproc::Process& me = mproc::current_process();
    out.send(std::tuple<int, int>(a, b));
    out.send(me.name());
    const mproc::AuthKey key = me.authkey();
    out.send(std::vector<std::byte>(key.bytes().begin(), key.bytes().end()));
    out.send(me.pid().value());
}

void send_parent(Connection& out) {
    auto parent = mproc::parent_process();
    out.send(std::tuple<int, std::string>(parent->pid().value(), parent->name()));
}

void send_thread_id(Connection& out) { out.send(static_cast<long>(::syscall(SYS_gettid))); }

void set_and_sleep(mproc::Event& started) {
    started.set();
    for (;;) ::pause();
}

void wait_for(mproc::Event& event) { event.wait(); }

void take_one_then_exit(mproc::Queue<int> q) { static_cast<void>(q.get()); }

void do_nothing() {}

void sleep_forever() {
    for (;;) ::pause();
}

// _TestProcess._test_recursion: each process sends its path in the tree, then starts two children
// one after the other, down to depth 2.
void recurse(Connection& out, std::vector<int> id) {
    out.send(id);
    if (id.size() < 2) {
        for (int i = 0; i < 2; ++i) {
            std::vector<int> child_id = id;
            child_id.push_back(i);
            mproc::Process p(recurse, out, child_id);
            p.start();
            p.join();
        }
    }
}

void send_fd_count_then_wait(mproc::Queue<int> counts, mproc::Event& done) {
    counts.put(mproc::testing::count_open_fds());
    done.wait();
}

void break_stream_then_set(mproc::Event& done, int which, bool close_it) {
    FILE* stream = which == 1 ? stdout : stderr;
    std::fprintf(stream, "buffered text that cannot be flushed");
    if (close_it)
        std::fclose(stream);
    else
        ::close(which);
    done.set();
}

void throw_with_stderr_in(std::string path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) mproc::exit(7);
    ::dup2(fd, 2);
    ::close(fd);
    throw std::domain_error("division by zero # MARKER");
}

void exit_with_text(std::string path, std::string reason) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) mproc::exit(7);
    ::dup2(fd, 2);
    ::close(fd);
    mproc::exit(reason);
}

void exit_with_list(std::string path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) mproc::exit(7);
    ::dup2(fd, 2);
    ::close(fd);
    mproc::exit(std::vector<int>{1, 2, 3});
}

void exit_with_bool(bool value) { mproc::exit(value); }
void exit_with_int(int value) { mproc::exit(value); }
void exit_with_nothing() { mproc::exit(); }

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string temp_path(const char* what) {
    return std::string("/tmp/mproc-cpython-") + what + "-" + std::to_string(::getpid());
}

// _TestSubclassingProcess's _UpperCaser: a Process subclass that owns both ends of a pipe.
struct UpperCaser : mproc::Process {
    UpperCaser() {
        auto [child, parent] = mproc::Pipe();
        child_conn = std::move(child);
        parent_conn = std::move(parent);
    }
    void run() override {
        parent_conn.close();
        for (;;) {
            auto text = child_conn.recv<std::optional<std::string>>();
            if (!text) break;
            std::transform(text->begin(), text->end(), text->begin(), [](unsigned char c) { return std::toupper(c); });
            child_conn.send(*text);
        }
        child_conn.close();
    }
    std::string submit(const std::string& text) {
        parent_conn.send(std::optional<std::string>(text));
        return parent_conn.recv<std::string>();
    }
    void stop() {
        parent_conn.send(std::optional<std::string>());
        parent_conn.close();
        child_conn.close();
    }
    template <class Archive>
    void serialize(Archive& ar) {
        ar(child_conn, parent_conn);
    }
    Connection child_conn;
    Connection parent_conn;
};
MPROC_REGISTER_PROCESS(UpperCaser);

}  // namespace

// CPython: _TestProcess.test_current
TEST_P(CPythonProcess, Current) {
    mproc::Process& current = mproc::current_process();
    EXPECT_TRUE(current.is_alive());
    EXPECT_FALSE(current.daemon());
    EXPECT_GT(current.authkey().bytes().size(), 0u);
    EXPECT_EQ(current.ident(), ::getpid());
    EXPECT_EQ(current.exitcode(), std::nullopt);
}

// CPython: _TestProcess.test_daemon_argument
TEST_P(CPythonProcess, DaemonArgument) {
    mproc::Process proc0(do_nothing);
    EXPECT_EQ(proc0.daemon(), mproc::current_process().daemon());
    mproc::Process proc1({.daemon = true}, do_nothing);
    EXPECT_TRUE(proc1.daemon());
    mproc::Process proc2({.daemon = false}, do_nothing);
    EXPECT_FALSE(proc2.daemon());
}

// CPython: _TestProcess.test_parent_process_attributes
TEST_P(CPythonProcess, ParentProcessAttributes) {
    EXPECT_FALSE(mproc::parent_process().has_value());
    auto [reader, writer] = mproc::Pipe(false);
    mproc::Process p(send_parent, std::move(writer));
    p.start();
    p.join();
    auto [parent_pid, parent_name] = reader.recv<std::tuple<int, std::string>>();
    EXPECT_EQ(parent_pid, mproc::current_process().pid());
    EXPECT_EQ(parent_pid, ::getpid());
    EXPECT_EQ(parent_name, mproc::current_process().name());
}

// CPython: _TestProcess.test_process
TEST_P(CPythonProcess, Process) {
    auto [reader, writer] = mproc::Pipe();
    mproc::Process p({.name = "SomeProcess"}, report_self, std::move(writer), 1, 2);
    p.set_daemon(true);
    EXPECT_EQ(p.authkey(), mproc::current_process().authkey());
    EXPECT_FALSE(p.is_alive());
    EXPECT_TRUE(p.daemon());
    auto is_active = [&p] {
        for (auto& child : mproc::active_children())
            if (child.pid() == p.pid()) return true;
        return false;
    };
    EXPECT_FALSE(is_active());
    EXPECT_EQ(p.exitcode(), std::nullopt);

    p.start();
    EXPECT_EQ(p.exitcode(), std::nullopt);
    EXPECT_TRUE(p.is_alive());
    EXPECT_TRUE(is_active());
    reader.send(0);
    const auto arguments = reader.recv<std::tuple<int, int>>();
    EXPECT_EQ(arguments, std::make_tuple(1, 2));
    EXPECT_EQ(reader.recv<std::string>(), "SomeProcess");
    const mproc::AuthKey key = mproc::current_process().authkey();
    EXPECT_EQ(reader.recv<std::vector<std::byte>>(), std::vector<std::byte>(key.bytes().begin(), key.bytes().end()));
    EXPECT_EQ(reader.recv<int>(), p.pid());

    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_FALSE(p.is_alive());
    EXPECT_FALSE(is_active());
}

// CPython: _TestProcess.test_process_mainthread_native_id
TEST_P(CPythonProcess, ChildMainThreadHasItsOwnNativeId) {
    auto [reader, writer] = mproc::Pipe(false);
    mproc::Process p(send_thread_id, std::move(writer));
    p.start();
    const long child_id = reader.recv<long>();
    p.join();
    EXPECT_NE(child_id, static_cast<long>(::syscall(SYS_gettid)));
}

// CPython: _TestProcess._kill_process, shared by test_terminate, test_kill and
// test_interrupt_no_handler: join(0) and join(-1) return at once while the child runs; after the
// signal, join returns, the child is no longer alive nor active, and the exit code is -signal.
int kill_process(void (mproc::Process::*method)()) {
    mproc::Event started;
    mproc::Process p({.daemon = true}, set_and_sleep, started);
    p.start();
    EXPECT_TRUE(p.is_alive());
    EXPECT_EQ(p.exitcode(), std::nullopt);
    p.join(0s);
    EXPECT_TRUE(p.is_alive());
    p.join(-1s);
    EXPECT_TRUE(p.is_alive());
    EXPECT_TRUE(started.wait(kPatience)) << "the child never started";
    (p.*method)();
    p.join();
    EXPECT_FALSE(p.is_alive());
    for (auto& child : mproc::active_children()) EXPECT_NE(child.pid(), p.pid());
    p.join();
    return p.exitcode().value();
}

// CPython: _TestProcess.test_terminate
TEST_P(CPythonProcess, Terminate) { EXPECT_EQ(kill_process(&mproc::Process::terminate), -SIGTERM); }

// CPython: _TestProcess.test_kill
TEST_P(CPythonProcess, Kill) { EXPECT_EQ(kill_process(&mproc::Process::kill), -SIGKILL); }

// CPython: _TestProcess.test_interrupt_no_handler (and test_interrupt: a C++ child has no
// KeyboardInterrupt to turn SIGINT into exit code 1; docs/differences.md)
TEST_P(CPythonProcess, InterruptWithoutHandler) { EXPECT_EQ(kill_process(&mproc::Process::interrupt), -SIGINT); }

// CPython: _TestProcess.test_cpu_count
TEST_P(CPythonProcess, CpuCount) { EXPECT_GE(mproc::cpu_count(), 1); }

// CPython: _TestProcess.test_active_children
TEST_P(CPythonProcess, ActiveChildren) {
    mproc::Event event;
    mproc::Process p({.daemon = true}, wait_for, event);
    auto listed = [&p] {
        for (auto& child : mproc::active_children())
            if (p.pid() && child.pid() == p.pid()) return true;
        return false;
    };
    EXPECT_FALSE(listed());
    p.start();
    EXPECT_TRUE(listed());
    event.set();
    p.join();
    EXPECT_FALSE(listed());
}

// CPython: _TestProcess.test_recursion (the write end travels to children and grandchildren)
TEST_P(CPythonProcess, Recursion) {
    auto [reader, writer] = mproc::Pipe(false);
    recurse(writer, {});
    writer.close();
    std::vector<std::vector<int>> result;
    // Every process of the tree has ended and every copy of the write end is closed: the reader
    // drains the messages, then sees end of file.
    for (;;) {
        try {
            result.push_back(reader.recv<std::vector<int>>());
        } catch (const mproc::EOFError&) {
            break;
        }
    }
    const std::vector<std::vector<int>> expected = {{}, {0}, {0, 0}, {0, 1}, {1}, {1, 0}, {1, 1}};
    EXPECT_EQ(result, expected);
}

// CPython: _TestProcess.test_sentinel
TEST_P(CPythonProcess, Sentinel) {
    mproc::Event event;
    mproc::Process p(wait_for, event);
    expect_throw_with<mproc::UsageError>([&] { static_cast<void>(p.sentinel()); }, "process not started");
    p.start();
    const int sentinel = p.sentinel();
    EXPECT_TRUE(mproc::connection::wait({sentinel}, 0s).empty());
    event.set();
    p.join();
    EXPECT_EQ(mproc::connection::wait({sentinel}, kPatience), std::vector<int>{sentinel});
}

// CPython: _TestProcess.test_close
TEST_P(CPythonProcess, Close) {
    mproc::Queue<int> q;
    mproc::Process p({.daemon = true}, take_one_then_exit, q);
    p.start();
    EXPECT_TRUE(p.is_alive());
    EXPECT_THROW(p.close(), mproc::UsageError);  // still running
    q.put(0);
    p.join();
    EXPECT_FALSE(p.is_alive());
    EXPECT_EQ(p.exitcode(), 0);
    p.close();
    const std::string closed = "process object is closed";
    expect_throw_with<mproc::UsageError>([&] { static_cast<void>(p.is_alive()); }, closed);
    expect_throw_with<mproc::UsageError>([&] { p.join(); }, closed);
    expect_throw_with<mproc::UsageError>([&] { p.terminate(); }, closed);
    p.close();  // a second close does nothing
}

// CPython: _TestProcess.test_many_processes (5 under spawn, as CPython; 50 otherwise)
TEST_P(CPythonProcess, ManyProcesses) {
    const int n = GetParam() == StartMethod::spawn ? 5 : 50;
    std::vector<mproc::Process> procs;
    for (int i = 0; i < n; ++i) procs.emplace_back(do_nothing);
    for (auto& p : procs) p.start();
    for (auto& p : procs) p.join();
    for (auto& p : procs) EXPECT_EQ(p.exitcode(), 0);

    procs.clear();
    for (int i = 0; i < n; ++i) procs.emplace_back(sleep_forever);
    for (auto& p : procs) p.start();
    for (auto& p : procs) p.terminate();  // at once: a child terminated while it starts ends too
    for (auto& p : procs) p.join();
    for (auto& p : procs) EXPECT_EQ(p.exitcode(), -SIGTERM);
}

// CPython: _TestProcess.test_child_fd_inflation, under spawn and forkserver (a fork child inherits
// every descriptor of its parent by design, as in Python, which skips fork too)
TEST(CPythonProcessExec, ChildDescriptorsDoNotGrowWithRunningChildren) {
    for (const mproc::Context* ctx : {&mproc::get_context("spawn"), &mproc::get_context("forkserver")}) {
        SCOPED_TRACE(std::string(ctx->name()));
        constexpr int kChildren = 5;
        mproc::Event done;
        mproc::Queue<int> counts;
        std::vector<mproc::Process> procs;
        for (int i = 0; i < kChildren; ++i) procs.push_back(ctx->Process(send_fd_count_then_wait, counts, done));
        for (auto& p : procs) p.start();
        std::vector<int> seen;
        for (int i = 0; i < kChildren; ++i) seen.push_back(counts.get());
        done.set();
        for (auto& p : procs) p.join();
        EXPECT_EQ(std::count(seen.begin(), seen.end(), seen.front()), kChildren) << ::testing::PrintToString(seen);
    }
}

// CPython: _TestProcess.test_error_on_stdio_flush_2 (the child breaks its own stdout or stderr,
// with text still buffered: its exit sequence must not fail)
TEST_P(CPythonProcess, BrokenStandardStreamsInTheChild) {
    for (int which : {1, 2}) {
        for (bool close_stream : {true, false}) {
            mproc::Event done;
            mproc::Process p(break_stream_then_set, done, which, close_stream);
            p.start();
            p.join();
            EXPECT_TRUE(done.is_set());
            EXPECT_EQ(p.exitcode(), 0) << "stream " << which << (close_stream ? " closed" : " descriptor closed");
        }
    }
}

// CPython: _TestSubclassingProcess.test_subclassing
TEST_P(CPythonProcess, Subclassing) {
    UpperCaser uppercaser;
    uppercaser.set_daemon(true);
    uppercaser.start();
    EXPECT_EQ(uppercaser.submit("hello"), "HELLO");
    EXPECT_EQ(uppercaser.submit("world"), "WORLD");
    uppercaser.stop();
    uppercaser.join();
    EXPECT_EQ(uppercaser.exitcode(), 0);
}

// CPython: _TestSubclassingProcess.test_stderr_flush (the whole report reaches stderr, here a
// file the child put there, before the process ends)
TEST_P(CPythonProcess, StderrIsFlushedAtExit) {
    const std::string path = temp_path("stderr");
    ::unlink(path.c_str());
    mproc::Process p(throw_with_stderr_in, path);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 1);
    const std::string err = read_file(path);
    ::unlink(path.c_str());
    EXPECT_NE(err.find("Process " + p.name() + ":"), std::string::npos) << err;
    EXPECT_NE(err.find("domain_error"), std::string::npos) << err;
    EXPECT_NE(err.find("division by zero # MARKER"), std::string::npos) << err;
}

// CPython: _TestSubclassingProcess.test_sys_exit
TEST_P(CPythonProcess, SysExit) {
    const std::string path = temp_path("exit");
    ::unlink(path.c_str());
    {
        mproc::Process p({.daemon = true}, exit_with_list, path);
        p.start();
        p.join();
        EXPECT_EQ(p.exitcode(), 1);
        EXPECT_EQ(read_file(path), "[1, 2, 3]\n");
        ::unlink(path.c_str());
    }
    {
        mproc::Process p({.daemon = true}, exit_with_text, path, std::string("ignore this"));
        p.start();
        p.join();
        EXPECT_EQ(p.exitcode(), 1);
        EXPECT_EQ(read_file(path), "ignore this\n");
        ::unlink(path.c_str());
    }
    const std::vector<std::pair<mproc::Process, int>> cases = {
        {mproc::Process({.daemon = true}, exit_with_bool, true), 1},
        {mproc::Process({.daemon = true}, exit_with_bool, false), 0},
        {mproc::Process({.daemon = true}, exit_with_int, 8), 8},
        {mproc::Process({.daemon = true}, exit_with_nothing), 0},
    };
    for (auto [p, expected] : cases) {
        p.start();
        p.join();
        EXPECT_EQ(p.exitcode(), expected);
    }
}

// CPython: _TestProcess.test_lose_target_ref (fork: a stateful target is not Encodable). After
// start() the Process no longer holds its target or its arguments.
TEST(CPythonProcessFork, StartReleasesTheTargetAndItsArguments) {
    auto target_state = std::make_shared<int>(5);
    auto argument = std::make_shared<int>(6);
    std::weak_ptr<int> target_alive = target_state;
    std::weak_ptr<int> argument_alive = argument;
    mproc::Process p({.start_method = StartMethod::fork},
                     [state = std::move(target_state)](const std::shared_ptr<int>& a) { mproc::exit(*state + *a); },
                     std::move(argument));
    EXPECT_FALSE(target_alive.expired());
    EXPECT_FALSE(argument_alive.expired());
    p.start();
    EXPECT_TRUE(target_alive.expired());
    EXPECT_TRUE(argument_alive.expired());
    p.join();
    EXPECT_EQ(p.exitcode(), 11);
}

namespace {

void send_start_method(Connection& out) { out.send(mproc::get_start_method().value_or("none")); }

void put_one(mproc::Queue<int> q) { q.put(1); }

void put_two_and_nest_once(mproc::Queue<int> q) {
    q.put(2);
    mproc::Process p(put_one, q);
    p.start();
    p.join();
}

void report_descriptor(Connection& out, int fd) { out.send(::fcntl(fd, F_GETFD) < 0 ? errno : 0); }

void ignore_usr1(int) {}

// TestIgnoreEINTR._test_ignore: a SIGUSR1 handler without SA_RESTART, then a receive and a send
// larger than the pipe holds, both of which the parent interrupts with SIGUSR1.
void echo_under_signals(Connection& conn, std::size_t big) {
    struct sigaction action {};
    action.sa_handler = ignore_usr1;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGUSR1, &action, nullptr);
    conn.send(std::string("ready"));
    conn.send(conn.recv<int>());
    conn.send_bytes(std::string(big, 'x'));
}

void signal_then_sleep(mproc::Semaphore& started) {
    started.release();
    for (;;) ::pause();
}

}  // namespace

// CPython: TestStartMethod.test_context (the child knows its start method)
TEST_P(CPythonProcess, ChildReportsItsStartMethod) {
    const mproc::Context& ctx = mproc::get_context(mproc::to_string(GetParam()));
    EXPECT_EQ(ctx.start_method(), GetParam());
    auto [reader, writer] = mproc::Pipe(false);
    mproc::Process p = ctx.Process(send_start_method, writer);
    p.start();
    writer.close();
    EXPECT_EQ(reader.recv<std::string>(), std::string(mproc::to_string(GetParam())));
    p.join();
}

// CPython: TestStartMethod.test_nested_startmethod (a child passes its argument on)
TEST_P(CPythonProcess, ChildPassesItsArgumentToAGrandchild) {
    mproc::Queue<int> q;
    mproc::Process p(put_two_and_nest_once, q);
    p.start();
    p.join();
    std::vector<int> results = {q.get(), q.get()};
    std::sort(results.begin(), results.end());
    EXPECT_EQ(results, (std::vector<int>{1, 2}));
    EXPECT_TRUE(q.empty());
}

// CPython: TestCloseFds.test_closefd: a spawn or forkserver child does not get the parent's
// descriptors (even one without close-on-exec); a fork child inherits them.
TEST_P(CPythonProcess, ChildDoesNotInheritUnrelatedDescriptors) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    const int high = ::fcntl(fd, F_DUPFD, 50);  // no close-on-exec
    ::close(fd);
    ASSERT_GE(high, 50);
    auto [reader, writer] = mproc::Pipe(false);
    mproc::Process p(report_descriptor, std::move(writer), high);
    p.start();
    const int error = reader.recv<int>();
    p.join();
    ::close(high);
    EXPECT_EQ(error, GetParam() == StartMethod::fork ? 0 : EBADF);
}

// CPython: TestIgnoreEINTR.test_ignore: signals with a handler do not break a receive or a
// send in progress.
TEST_P(CPythonProcess, ConnectionIgnoresEintr) {
    constexpr std::size_t kBig = 4 << 20;  // more than a socket buffer holds
    auto [conn, child_conn] = mproc::Pipe();
    mproc::Process p({.daemon = true}, echo_under_signals, std::move(child_conn), kBig);
    p.start();
    EXPECT_EQ(conn.recv<std::string>(), "ready");
    const int pid = p.pid().value();
    ::kill(pid, SIGUSR1);  // the child waits in recv, or is about to
    conn.send(1234);
    EXPECT_EQ(conn.recv<int>(), 1234);
    for (int i = 0; i < 20; ++i) ::kill(pid, SIGUSR1);  // the child is sending 4 MiB meanwhile
    EXPECT_EQ(conn.recv_bytes().size(), kBig);
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
}

// CPython: TestWait.test_wait_integer: a sentinel and connections in one wait.
TEST_P(CPythonProcess, WaitOnSentinelsAndConnections) {
    mproc::Semaphore started(0);
    auto [a, b] = mproc::Pipe();
    mproc::Process p(signal_then_sleep, started);
    p.start();
    ASSERT_TRUE(started.acquire(true, kPatience));
    const int sentinel = p.sentinel();
    using Item = std::variant<int, Connection*>;
    std::vector<Item> items = {&a, sentinel, &b};
    EXPECT_TRUE(mproc::connection::wait(items, 0s).empty());
    a.send(0);  // b becomes ready
    auto ready = mproc::connection::wait(items, kPatience);
    ASSERT_EQ(ready.size(), 1u);
    EXPECT_EQ(std::get<Connection*>(ready[0]), &b);
    p.terminate();
    p.join();
    // The sentinel (a pidfd under every start method) stays readable once the child has ended.
    EXPECT_EQ(mproc::connection::wait({sentinel}, kPatience), std::vector<int>{sentinel});
    b.send(0);  // a becomes ready too
    ready = mproc::connection::wait(items, kPatience);
    ASSERT_EQ(ready.size(), 3u);
    EXPECT_EQ(std::get<Connection*>(ready[0]), &a);
    EXPECT_EQ(std::get<int>(ready[1]), sentinel);
    EXPECT_EQ(std::get<Connection*>(ready[2]), &b);
}

// CPython: TestWait.test_neg_timeout
TEST(CPythonWait, NegativeTimeoutReturnsAtOnce) {
    auto [a, b] = mproc::Pipe();
    std::vector<Connection*> items = {&a};
    EXPECT_TRUE(mproc::connection::wait(items, -1s).empty());
}
