// Faults around starting children: parents killed with SIGKILL (no orphans), a fork server that
// dies, hostile start requests, a program without mproc::init, and forking while other threads
// hold mproc's locks (spec/faults.md rows 9, 28, 29).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "helpers/test_helpers.hpp"
#include "process/child_request.hpp"
#include "process/launcher.hpp"
#include "mproc/context.hpp"
#include "mproc/logging.hpp"
#include "mproc/process.hpp"

using namespace std::chrono_literals;
using mproc::StartMethod;

extern char** environ;

namespace {

// Starts a program with fd 3 a socket fed with `input` (as the spawn channel is), the given extra
// environment, and stdout/stderr captured; waits for it.
mproc::testing::ProgramResult run_with_channel(const char* program, const std::vector<std::byte>& input,
                                               const std::string& variable) {
    int channel[2], out[2], err[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channel), 0);
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, channel[0], 3);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    std::vector<std::string> env_storage;
    for (char** e = environ; *e; ++e) env_storage.emplace_back(*e);
    env_storage.push_back(variable + "=3");
    std::vector<char*> envp;
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string program_name = program;
    char* argv[] = {program_name.data(), nullptr};
    pid_t pid = 0;
    EXPECT_EQ(::posix_spawn(&pid, program, &actions, nullptr, argv, envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(channel[0]);
    ::close(out[1]);
    ::close(err[1]);
    (void)!::send(channel[1], input.data(), input.size(), MSG_NOSIGNAL);  // the child may stop reading early
    ::close(channel[1]);
    mproc::testing::ProgramResult result;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0) result.out.append(buf, static_cast<std::size_t>(n));
    while ((n = ::read(err[0], buf, sizeof buf)) > 0) result.err.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    ::close(err[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    return result;
}

std::vector<std::byte> request_with_target(const mproc::detail::CodeRef& entry) {
    mproc::detail::ChildRequest request;
    request.name = "hostile";
    request.identity = {1};
    request.parent_pid = ::getppid();
    request.target = mproc::dumps(entry);
    return mproc::dumps(request);
}

class NoOrphans : public ::testing::TestWithParam<StartMethod> {};

// This process's children that have not ended (a fork server of an earlier test, say).
std::vector<int> running_children() {
    std::vector<int> running;
    const std::string self = std::to_string(::getpid());
    DIR* dir = ::opendir("/proc");
    while (dirent* e = dir ? ::readdir(dir) : nullptr) {
        int pid = std::atoi(e->d_name);
        if (pid <= 0) continue;
        std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
        std::string content;
        if (!std::getline(stat, content)) continue;
        auto paren = content.rfind(')');
        if (paren == std::string::npos) continue;
        std::istringstream rest(content.substr(paren + 2));
        char state = 0;
        std::string ppid;
        rest >> state >> ppid;
        if (ppid == self && state != 'Z' && state != 'X') running.push_back(pid);
    }
    if (dir) ::closedir(dir);
    std::sort(running.begin(), running.end());
    return running;
}

}  // namespace

TEST_P(NoOrphans, ChildrenDieWithAParentKilledBySigkill) {
    // Orphans are reparented to this process, which then sees them end (zombies count as gone).
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    const std::vector<int> children_before = running_children();
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<std::string> env_storage;
    for (char** e = environ; *e; ++e) env_storage.emplace_back(*e);
    env_storage.push_back("MPROC_START_METHOD=" + std::string(mproc::to_string(GetParam())));
    std::vector<char*> envp;
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string program = mproc::testing::scenario_program();
    std::string scenario = "orphans";
    char* argv[] = {program.data(), scenario.data(), nullptr};
    pid_t parent = 0;
    ASSERT_EQ(::posix_spawn(&parent, program.c_str(), &actions, nullptr, argv, envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);

    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(out[0]);
    std::istringstream fields(line);
    std::string word;
    int pids[3] = {0, 0, 0};
    fields >> word >> pids[0] >> pids[1] >> pids[2];
    ASSERT_EQ(word, "pids") << line;

    ::kill(parent, SIGKILL);
    ::waitpid(parent, nullptr, 0);
    // They die: at once, but a loaded machine may take long to schedule them, hence 30 s.
    const auto killed_at = std::chrono::steady_clock::now();
    for (int pid : pids) {
        while (!mproc::testing::process_gone(pid) && std::chrono::steady_clock::now() - killed_at < 30s)
            std::this_thread::sleep_for(5ms);
        EXPECT_TRUE(mproc::testing::process_gone(pid)) << "child " << pid << " outlived its parent by 30 s";
    }
    // Nothing of the killed program's tree (its children, its fork server) may be left running
    // here; then reap what was reparented.
    std::vector<int> children_after = running_children();
    while (children_after != children_before && std::chrono::steady_clock::now() - killed_at < 30s) {
        std::this_thread::sleep_for(5ms);
        children_after = running_children();
    }
    EXPECT_EQ(children_after, children_before) << "a descendant of the killed parent is still running";
    for (int pid : pids) ::waitpid(pid, nullptr, WNOHANG);
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, NoOrphans,
                         ::testing::Values(StartMethod::fork, StartMethod::spawn, StartMethod::forkserver),
                         [](const auto& info) { return std::string(mproc::to_string(info.param)); });

TEST(StartMethodFaults, DieWithParentIsOffForNonDaemonsByDefault) {
    // A non-daemon child of a middle process outlives it (and is then killed here). A death
    // signal (PR_SET_PDEATHSIG) would be sent as the middle process exits, when its children are
    // given a new parent: the survivor reports once its parent has changed, so it was alive after
    // the moment such a signal comes.
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    auto middle = mproc::fork_context.Process([w = fds[1]] {
        auto survivor = mproc::fork_context.Process([w, middle_pid = ::getpid()] {
            const auto deadline = std::chrono::steady_clock::now() + 60s;
            while (::getppid() == middle_pid && std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(1ms);
            (void)!::write(w, "r", 1);
            std::this_thread::sleep_for(30s);
        });
        survivor.start();
        int pid = *survivor.pid();
        (void)!::write(w, &pid, sizeof pid);
        ::_exit(0);
    });
    middle.start();
    ::close(fds[1]);
    int survivor_pid = 0;
    ASSERT_EQ(::read(fds[0], &survivor_pid, sizeof survivor_pid), static_cast<ssize_t>(sizeof survivor_pid));
    middle.join();
    char reparented = 0;
    // End of file instead if the survivor died: it held the last write end.
    EXPECT_EQ(::read(fds[0], &reparented, 1), 1) << "the child died with its parent";
    ::close(fds[0]);
    EXPECT_EQ(reparented, 'r');
    EXPECT_FALSE(mproc::testing::process_gone(survivor_pid));
    ::kill(survivor_pid, SIGKILL);
}

TEST(StartMethodFaults, ForkServerKilledIsRestartedAndLostStatusIsReported) {
    auto sleeper = mproc::forkserver_context.Process([] { std::this_thread::sleep_for(30s); });
    sleeper.start();
    const int server = mproc::detail::forkserver_pid();
    ASSERT_GT(server, 0);
    ASSERT_EQ(::kill(server, SIGKILL), 0);

    // The next start finds the server dead and starts a new one.
    auto next = mproc::forkserver_context.Process([] { mproc::exit(3); });
    next.start();
    next.join();
    EXPECT_EQ(next.exitcode(), 3);
    EXPECT_NE(mproc::detail::forkserver_pid(), server);

    // The orphaned child's exit code cannot be learnt any more; join must still return.
    sleeper.kill();
    sleeper.join(10s);
    EXPECT_FALSE(sleeper.is_alive());
    EXPECT_EQ(sleeper.exitcode(), mproc::detail::kExitcodeUnknown);
}

TEST(StartMethodFaults, ForkServerChildKilledHasItsExitcodeOnceItsSentinelIsReady) {
    // Such a child cannot report its exit code itself: the server's report must be in by the time
    // exitcode() is asked, without a join.
    auto sleeper = mproc::forkserver_context.Process([] { std::this_thread::sleep_for(30s); });
    sleeper.start();
    sleeper.kill();
    pollfd ended{sleeper.sentinel(), POLLIN, 0};
    ASSERT_EQ(::poll(&ended, 1, 10'000), 1);
    EXPECT_EQ(sleeper.exitcode(), -SIGKILL);
    EXPECT_FALSE(sleeper.is_alive());
    sleeper.join();
}

TEST(StartMethodFaults, ForkServerChildrenDoNotPassOnTheServersBindNow) {
    if (std::getenv("LD_BIND_NOW") != nullptr) GTEST_SKIP() << "LD_BIND_NOW is set for the whole test";
    // The server resolves its symbols at start (LD_BIND_NOW, which mproc adds); its children, and
    // the programs they execute, must see the environment the parent had.
    auto child = mproc::forkserver_context.Process([] {
        const bool clean = std::getenv("LD_BIND_NOW") == nullptr &&
                           std::getenv(mproc::detail::kForkServerBindNowVariable) == nullptr;
        mproc::exit(clean ? 0 : 1);
    });
    child.start();
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
}

TEST(StartMethodFaults, GarbageStartRequestEndsTheChildWithAMessage) {
    std::vector<std::byte> garbage(100);
    for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<std::byte>(i * 37 + 11);
    auto r = run_with_channel(mproc::testing::scenario_program(), garbage, mproc::detail::kSpawnFdVariable);
    EXPECT_EQ(r.exit_status, 1);
    EXPECT_NE(r.err.find("mproc: a child could not decode its start request: mproc codec"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");

    auto empty = run_with_channel(mproc::testing::scenario_program(), {}, mproc::detail::kSpawnFdVariable);
    EXPECT_EQ(empty.exit_status, 1);
    EXPECT_NE(empty.err.find("could not decode its start request"), std::string::npos) << empty.err;
}

TEST(StartMethodFaults, UnresolvableCodeReferenceEndsTheChildWithAMessage) {
    auto not_code = run_with_channel(mproc::testing::scenario_program(),
                                     request_with_target({"", std::uint64_t{1} << 40}), mproc::detail::kSpawnFdVariable);
    EXPECT_EQ(not_code.exit_status, 1);
    EXPECT_NE(not_code.err.find("Process hostile:\nmproc::DecodeError: code reference to offset"), std::string::npos)
        << not_code.err;
    EXPECT_NE(not_code.err.find("is not in executable code"), std::string::npos) << not_code.err;

    auto not_loaded = run_with_channel(mproc::testing::scenario_program(),
                                       request_with_target({"/nonexistent/libnothere.so", 0}),
                                       mproc::detail::kSpawnFdVariable);
    EXPECT_EQ(not_loaded.exit_status, 1);
    EXPECT_NE(not_loaded.err.find("which is not loaded in this process"), std::string::npos) << not_loaded.err;
}

TEST(StartMethodFaults, ProgramWithoutInitIsToldWhatToDo) {
    auto r = mproc::testing::run_program({MPROC_NO_INIT_PROGRAM});
    EXPECT_EQ(r.exit_status, 0) << r.err;
    EXPECT_EQ(r.out,
              "spawn: the spawn start method executes this program anew: call mproc::init(argc, argv) first in main\n"
              "forkserver: the forkserver start method executes this program anew: call mproc::init(argc, argv) "
              "first in main\n");
}

TEST(StartMethodFaults, ForkIsSafeWhileOtherThreadsTakeMprocLocks) {
    auto& log = mproc::get_logger();
    log.set_level(mproc::logging::INFO);
    log.add_handler([](mproc::LogLevel, std::string_view, std::string_view) {});
    std::atomic<bool> stop{false};
    std::vector<std::thread> busy;
    for (int i = 0; i < 4; ++i) {
        busy.emplace_back([&stop, i] {
            while (!stop.load(std::memory_order_relaxed)) {
                mproc::get_logger().info("busy thread {}", i);       // the handlers' lock
                mproc::Process unstarted;                             // the runtime's lock
                (void)mproc::active_children();                      // the runtime's lock
                (void)mproc::current_process().name();
                (void)mproc::get_start_method();                     // the start method's lock
            }
        });
    }
    // A thousand forks in the normal build (about 10 s); under AddressSanitizer a fork and its
    // child cost six times as much, and two hundred keep the test near 15 s.
#if defined(__SANITIZE_ADDRESS__)
    constexpr int kForks = 200;
#else
    constexpr int kForks = 1000;
#endif
    int failures = 0;
    for (int i = 0; i < kForks; ++i) {
        auto p = mproc::fork_context.Process([] {
            mproc::get_logger().info("child");
            mproc::Process grandchild;
            (void)mproc::active_children();
            (void)mproc::get_start_method();
        });
        p.start();
        p.join(10s);
        if (p.exitcode() != 0) {
            ++failures;
            p.kill();
            p.join();
        }
    }
    stop = true;
    for (auto& t : busy) t.join();
    log.clear_handlers();
    log.set_level(mproc::logging::NOTSET);
    EXPECT_EQ(failures, 0) << "children deadlocked or failed after fork";
}
