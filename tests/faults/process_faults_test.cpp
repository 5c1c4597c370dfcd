// Faults a Process must survive: crashing children, signal storms during waits, and leaks over
// many starts (spec/faults.md rows 3, 14, 16).
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>
#include <vector>

#include "helpers/sync_test_helpers.hpp"
#include "helpers/test_helpers.hpp"
#include "mproc/connection.hpp"
#include "mproc/process.hpp"

using namespace std::chrono_literals;

TEST(ProcessFaults, CrashingChildrenLeaveTheParentUnharmed) {
    // A write to a page mapped without access: a real fault, which no sanitizer intercepts first.
    void* page = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(page, MAP_FAILED);
    mproc::Process segv([page] { *static_cast<volatile int*>(page) = 1; });
    mproc::Process aborts([] { std::abort(); });
    mproc::Process fpe([] { std::raise(SIGFPE); });
    for (auto* p : {&segv, &aborts, &fpe}) p->start();
    for (auto* p : {&segv, &aborts, &fpe}) p->join();
    EXPECT_EQ(segv.exitcode(), -SIGSEGV);
    EXPECT_EQ(aborts.exitcode(), -SIGABRT);
    EXPECT_EQ(fpe.exitcode(), -SIGFPE);
    // The parent goes on starting processes.
    mproc::Process after([] {});
    after.start();
    after.join();
    EXPECT_EQ(after.exitcode(), 0);
    ::munmap(page, 4096);
}

TEST(ProcessFaults, ThousandStartsLeaveNoDescriptorOrZombie) {
    const int fds_before = mproc::testing::count_open_fds();
    for (int i = 0; i < 1000; ++i) {
        mproc::Process p([] {});
        p.start();
        p.join();
        ASSERT_EQ(p.exitcode(), 0) << "iteration " << i;
    }
    EXPECT_EQ(mproc::testing::count_open_fds(), fds_before);
    EXPECT_TRUE(mproc::testing::zombie_children().empty());
    EXPECT_TRUE(mproc::active_children().empty());
    // No other child is left to reap.
    int status = 0;
    EXPECT_EQ(::waitpid(-1, &status, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

TEST(ProcessFaults, StartedChildrenCostNoThread) {
    auto threads = [] { return mproc::testing::count_entries("/proc/self/task"); };
    const int before = threads();
    std::vector<mproc::Process> sleepers;
    for (int i = 0; i < 5; ++i) sleepers.emplace_back([] { std::this_thread::sleep_for(30s); }).start();
    EXPECT_EQ(threads(), before) << "starting children created threads";
    for (auto& p : sleepers) p.kill();
    for (auto& p : sleepers) p.join();
    EXPECT_EQ(threads(), before);
}

TEST(ProcessFaults, ClosedProcessesReleaseTheirSentinel) {
    const int fds_before = mproc::testing::count_open_fds();
    mproc::Process p([] {});
    p.start();
    EXPECT_EQ(mproc::testing::count_open_fds(), fds_before + 1);  // the pidfd
    p.join();
    p.close();
    EXPECT_EQ(mproc::testing::count_open_fds(), fds_before);
}

namespace {
volatile sig_atomic_t alarms = 0;
void count_alarm(int) { alarms = alarms + 1; }
}  // namespace

TEST(ProcessFaults, JoinSurvivesAnEintrStorm) {
    struct sigaction action {};
    action.sa_handler = count_alarm;  // no SA_RESTART: every alarm interrupts the wait
    sigemptyset(&action.sa_mask);
    struct sigaction previous {};
    ASSERT_EQ(::sigaction(SIGALRM, &action, &previous), 0);
    itimerval every_ms{{0, 1000}, {0, 1000}};
    ASSERT_EQ(::setitimer(ITIMER_REAL, &every_ms, nullptr), 0);

    // The child runs until the parent lets it go, after the timed join has looked.
    auto [gate_child, gate] = mproc::Pipe(false);
    mproc::Process p([](mproc::Connection gate) { gate.recv_bytes(); }, std::move(gate_child));
    p.start();
    auto begin = std::chrono::steady_clock::now();
    p.join(100ms);  // a timed join keeps its deadline across interruptions
    auto timed = std::chrono::steady_clock::now() - begin;
    EXPECT_TRUE(p.is_alive());
    const int alarms_before_join = alarms;
    // Let the child go once the untimed join is blocked, so that the storm interrupts it too.
    // The releasing thread blocks SIGALRM (a new thread inherits the mask), so every alarm goes
    // to this thread.
    sigset_t alarm_only, old_mask;
    sigemptyset(&alarm_only);
    sigaddset(&alarm_only, SIGALRM);
    ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &alarm_only, &old_mask), 0);
    const pid_t parent = mproc::testing::this_thread_id();
    std::thread releaser = mproc::testing::act_once_blocked(parent, mproc::testing::wchan::poll, [&gate] {
        // A few more interruptions of the blocked join first.
        const int seen = alarms;
        mproc::testing::eventually([seen] { return alarms > seen + 10; });
        gate.send_bytes(std::string_view("go"));
    });
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    p.join();
    releaser.join();

    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::sigaction(SIGALRM, &previous, nullptr);

    EXPECT_GE(timed, 100ms);
    EXPECT_LT(timed, 30s);
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_GT(alarms_before_join, 10) << "the storm did not happen";
    EXPECT_GT(alarms, alarms_before_join + 10) << "the untimed join was not interrupted";
}

TEST(ProcessFaults, ChildKilledWhileParentWaits) {
    mproc::Process p([] { std::this_thread::sleep_for(30s); });
    p.start();
    // The kill lands while join() waits on the child's sentinel.
    std::thread killer = mproc::testing::act_once_blocked(mproc::testing::this_thread_id(), mproc::testing::wchan::poll,
                                                          [pid = *p.pid()] { ::kill(pid, SIGKILL); });
    p.join();
    killer.join();
    EXPECT_EQ(p.exitcode(), -SIGKILL);
}
