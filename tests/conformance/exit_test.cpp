// Exit-time behaviour, observed on whole programs (tests/helpers/scenarios.cpp): what the main
// process does when main returns, and what a child does when it ends.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "helpers/test_helpers.hpp"
#include "mproc/context.hpp"

using namespace std::chrono_literals;

namespace {

// Every scenario runs under each start method, chosen through MPROC_START_METHOD.
class Exit : public ::testing::TestWithParam<mproc::StartMethod> {
protected:
    mproc::testing::ProgramResult run_scenario(const std::vector<std::string>& args) {
        return mproc::testing::run_scenario(args, {"MPROC_START_METHOD=" + std::string(mproc::to_string(GetParam()))});
    }
};

int count(const std::vector<std::string>& lines, const std::string& line) {
    return static_cast<int>(std::count(lines.begin(), lines.end(), line));
}
bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

INSTANTIATE_TEST_SUITE_P(StartMethods, Exit,
                         ::testing::Values(mproc::StartMethod::fork, mproc::StartMethod::spawn,
                                           mproc::StartMethod::forkserver),
                         [](const auto& info) { return std::string(mproc::to_string(info.param)); });

TEST_P(Exit, BufferedOutputAppearsExactlyOnce) {
    auto r = run_scenario({"unflushed_output"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    auto lines = r.out_lines();
    EXPECT_EQ(count(lines, "parent before start"), 1) << r.out;
    EXPECT_EQ(count(lines, "parent after start"), 1) << r.out;
    EXPECT_EQ(count(lines, "child line"), 1) << r.out;
    EXPECT_EQ(count(lines, "second child line"), 1) << r.out;
    EXPECT_EQ(r.err, "");
}

TEST_P(Exit, MainJoinsNonDaemonChildren) {
    auto r = run_scenario({"exit_joins_non_daemon"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    auto lines = r.out_lines();
    ASSERT_EQ(lines.size(), 3u) << r.out;
    // The main process's stdout is a pipe, so its line is written at its exit, after the join.
    EXPECT_EQ(lines[0], "non-daemon finished");
    EXPECT_EQ(lines[1], "main returns");
    EXPECT_TRUE(starts_with(lines[2], "static destructor in ")) << lines[2];
}

TEST_P(Exit, MainTerminatesDaemonChildren) {
    auto begin = std::chrono::steady_clock::now();
    auto r = run_scenario({"exit_terminates_daemon"});
    auto took = std::chrono::steady_clock::now() - begin;
    ASSERT_EQ(r.exit_status, 0) << r.err;
    EXPECT_LT(took, 20s) << "the daemon was waited for instead of terminated";
    auto lines = r.out_lines();
    ASSERT_FALSE(lines.empty());
    ASSERT_TRUE(starts_with(lines[0], "daemon pid ")) << r.out;
    int daemon_pid = std::stoi(lines[0].substr(11));
    EXPECT_EQ(r.out.find("daemon woke up"), std::string::npos);
    EXPECT_TRUE(mproc::testing::process_gone(daemon_pid));
}

TEST_P(Exit, ChildNeverRunsParentExitHandlers) {
    auto r = run_scenario({"child_skips_parent_exit_handlers"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    auto lines = r.out_lines();
    ASSERT_FALSE(lines.empty());
    ASSERT_TRUE(starts_with(lines[0], "main pid ")) << r.out;
    const std::string main_pid = lines[0].substr(9);
    EXPECT_EQ(count(lines, "exitcodes 5 0 6"), 1) << r.out;
    // Exactly one atexit line and one static destructor line, both from the main process.
    EXPECT_EQ(count(lines, "atexit handler in " + main_pid), 1) << r.out;
    EXPECT_EQ(count(lines, "static destructor in " + main_pid), 1) << r.out;
    EXPECT_EQ(lines.size(), 4u) << r.out;
}

TEST_P(Exit, LifeCycleLogLines) {
    auto r = run_scenario({"exit_log_sequence"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    auto lines = r.err_lines();
    // The child (Process-1) leaves its own child (Process-1:1) unjoined: its exit sequence joins it.
    std::vector<std::string> child = {
        "[INFO/Process-1] child process calling self.run()",
        "[INFO/Process-1] process shutting down",
        "[DEBUG/Process-1] running all \"atexit\" finalizers with priority >= 0",
        "[INFO/Process-1] calling join() for process Process-1:1",
        "[DEBUG/Process-1] running the remaining \"atexit\" finalizers",
        "[INFO/Process-1] process exiting with exitcode 0",
    };
    std::vector<std::string> main_tail = {
        "[INFO/MainProcess] process shutting down",
        "[DEBUG/MainProcess] running all \"atexit\" finalizers with priority >= 0",
        "[INFO/MainProcess] calling terminate() for daemon sleeper",
        "[INFO/MainProcess] calling join() for process sleeper",
        "[DEBUG/MainProcess] running the remaining \"atexit\" finalizers",
    };
    std::vector<std::string> child_seen, main_seen;
    for (auto& l : lines) {
        if (starts_with(l, "[INFO/Process-1]") || starts_with(l, "[DEBUG/Process-1]")) child_seen.push_back(l);
        if (starts_with(l, "[INFO/MainProcess]") || starts_with(l, "[DEBUG/MainProcess]")) main_seen.push_back(l);
    }
    EXPECT_EQ(child_seen, child) << r.err;
    EXPECT_EQ(main_seen, main_tail) << r.err;
    EXPECT_EQ(count(r.out_lines(), "grandchild Process-1:1"), 1) << r.out;
}

TEST_P(Exit, StdExitInChildRunsTheChildExitSequence) {
    auto r = run_scenario({"std_exit_in_child_logs"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    EXPECT_EQ(count(r.out_lines(), "exitcode 3"), 1) << r.out;
    std::vector<std::string> expected = {
        "[INFO/Process-1] child process calling self.run()",
        "[INFO/Process-1] process shutting down",
        "[INFO/Process-1] process exiting with exitcode 3",
        "[INFO/MainProcess] process shutting down",
    };
    EXPECT_EQ(r.err_lines(), expected) << r.err;
}

TEST_P(Exit, UncaughtExceptionsAreReportedOnStderr) {
    auto r = run_scenario({"uncaught_exception"});
    ASSERT_EQ(r.exit_status, 0) << r.err;
    EXPECT_EQ(count(r.out_lines(), "exitcodes 1 1"), 1) << r.out;
    std::vector<std::string> expected = {
        "Process raises:",
        "std::invalid_argument: bad value 42",
        "Process raises_int:",
        "int",
    };
    EXPECT_EQ(r.err_lines(), expected) << r.err;
}

// Python's sys.exit with a reason that is not an int: the reason on stderr, exit code 1; True is
// 1 and False 0. In the main process too.
TEST_P(Exit, ExitWithAReasonPrintsItAndGivesOne) {
    auto r = run_scenario({"exit_reasons"});
    EXPECT_EQ(r.exit_status, 1) << r.err;
    // std::exit(1) in the main process runs its static destructors (the scenario has one).
    auto lines = r.out_lines();
    ASSERT_EQ(lines.size(), 2u) << r.out;
    EXPECT_EQ(lines[0], "exitcodes 1 1 1 0 1");
    EXPECT_TRUE(starts_with(lines[1], "static destructor in ")) << lines[1];
    EXPECT_EQ(r.err_lines(),
              (std::vector<std::string>{"child text reason", "[1, 2, 3]", "streamed reason", "main reason"}))
        << r.err;
}
