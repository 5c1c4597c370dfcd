// The scenario program: small whole programs whose exit behaviour the tests observe from outside
// (what reaches stdout and stderr, exit status, which processes are left). One scenario per
// behaviour, chosen by the first argument.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "thread_state.hpp"  // beside this file
#include "mproc/logging.hpp"
#include "mproc/process.hpp"
#include "mproc/synchronize.hpp"

namespace {

using namespace std::chrono_literals;

struct LoudStatic {
    ~LoudStatic() { std::printf("static destructor in %d\n", static_cast<int>(::getpid())); }
};
LoudStatic loud_static;

// Output buffered in the parent before a fork, and in the child at its exit, appears once.
int unflushed_output() {
    std::printf("parent before start\n");  // stdout is a pipe: block-buffered, not yet written
    mproc::Process p([] { std::printf("child line\n"); });
    p.start();
    std::printf("parent after start\n");
    p.join();
    mproc::Process q([] { std::printf("second child line\n"); });  // never joined explicitly
    q.start();
    return 0;
}

// Main returns without joining: a non-daemon child is waited for, even after its Process object
// is gone.
int exit_joins_non_daemon() {
    {
        mproc::Process p([] {
            std::this_thread::sleep_for(300ms);
            std::printf("non-daemon finished\n");
        });
        p.start();
    }
    std::printf("main returns\n");
    return 0;
}

// Main returns while a daemon child sleeps: the daemon is terminated, its line never printed.
// Main returns once the daemon has printed its pid (its Event), however slowly it started.
int exit_terminates_daemon() {
    mproc::Event printed;
    mproc::Process d(
        {.daemon = true},
        [](mproc::Event printed) {
            std::printf("daemon pid %d\n", static_cast<int>(::getpid()));
            std::fflush(stdout);
            printed.set();
            std::this_thread::sleep_for(30s);
            std::printf("daemon woke up\n");
        },
        printed);
    d.start();
    if (!printed.wait(60s)) {
        std::fprintf(stderr, "the daemon did not print its pid within 60 s\n");
        return 1;
    }
    return 0;
}

// A child that calls std::exit, or returns, never runs the parent's atexit handlers or static
// destructors; the parent runs them once.
int child_skips_parent_exit_handlers() {
    std::atexit([] { std::printf("atexit handler in %d\n", static_cast<int>(::getpid())); });
    std::printf("main pid %d\n", static_cast<int>(::getpid()));
    mproc::Process by_exit([] { std::exit(5); });
    mproc::Process by_return([] {});
    mproc::Process by_mproc_exit([] { mproc::exit(6); });
    by_exit.start();
    by_return.start();
    by_mproc_exit.start();
    by_exit.join();
    by_return.join();
    by_mproc_exit.join();
    std::printf("exitcodes %d %d %d\n", *by_exit.exitcode(), *by_return.exitcode(), *by_mproc_exit.exitcode());
    return 0;
}

// The grandchild of exit_log_sequence: it must still run when its parent's exit sequence looks
// for children to join. It waits until its parent has finished its target (`parent_done`, the
// target's last statement) and then sleeps in poll(2), which after its target it does only to
// join this grandchild; then it ends.
void outlive_parent_target(mproc::Event parent_done, int parent_pid) {
    parent_done.wait();
    if (!mproc::testing::wait_until_blocked(parent_pid, mproc::testing::wchan::poll, 60s))
        std::fprintf(stderr, "the parent %d never joined its child\n", parent_pid);
    std::printf("grandchild %s\n", mproc::current_process().name().c_str());
}

// The life-cycle log lines of a child that leaves a grandchild unjoined, with DEBUG logging.
int exit_log_sequence() {
    mproc::log_to_stderr(mproc::logging::DEBUG);
    mproc::Process p([] {
        mproc::Event done;
        mproc::Process grandchild(outlive_parent_target, done, static_cast<int>(::getpid()));
        grandchild.start();
        done.set();
    });
    p.start();
    p.join();
    mproc::Process d({.name = "sleeper", .daemon = true}, [] { std::this_thread::sleep_for(30s); });
    d.start();
    return 0;
}

// std::exit(n) in a child runs the child's exit sequence with exit code n.
int std_exit_in_child_logs() {
    mproc::log_to_stderr(mproc::logging::INFO);
    mproc::Process p([] { std::exit(3); });
    p.start();
    p.join();
    std::printf("exitcode %d\n", *p.exitcode());
    return 0;
}

// An uncaught exception: "Process <name>:" and the exception on the child's stderr, exit code 1.
int uncaught_exception() {
    mproc::Process p({.name = "raises"}, [] { throw std::invalid_argument("bad value 42"); });
    p.start();
    p.join();
    mproc::Process q({.name = "raises_int"}, [] { throw 7; });
    q.start();
    q.join();
    std::printf("exitcodes %d %d\n", *p.exitcode(), *q.exitcode());
    return 0;
}

// Starts children that must not outlive this program even if it is killed with SIGKILL: two
// daemons (on by default for them) and a non-daemon that asks for it. Prints their pids, then
// waits to be killed.
int orphans() {
    auto sleeper = [] { std::this_thread::sleep_for(60s); };
    mproc::Process d1({.daemon = true}, sleeper);
    mproc::Process d2({.daemon = true}, sleeper);
    mproc::Process n({.die_with_parent = true}, sleeper);
    for (auto* p : {&d1, &d2, &n}) p->start();
    std::printf("pids %d %d %d\n", *d1.pid(), *d2.pid(), *n.pid());
    std::fflush(stdout);
    std::this_thread::sleep_for(60s);
    return 0;
}

// A reason that only an operator<< can print.
struct StreamedReason {
    friend std::ostream& operator<<(std::ostream& os, const StreamedReason&) { return os << "streamed reason"; }
};

// mproc::exit with a reason (Python's sys.exit("text"), sys.exit([1, 2, 3]), sys.exit(True)):
// each child's reason goes to stderr and its exit code is 1; then the main process exits the
// same way.
int exit_reasons() {
    std::vector<mproc::Process> children;
    children.emplace_back(mproc::ProcessOptions{.name = "text"}, [] { mproc::exit("child text reason"); });
    children.emplace_back(mproc::ProcessOptions{.name = "list"}, [] { mproc::exit(std::vector<int>{1, 2, 3}); });
    children.emplace_back(mproc::ProcessOptions{.name = "true"}, [] { mproc::exit(true); });
    children.emplace_back(mproc::ProcessOptions{.name = "false"}, [] { mproc::exit(false); });
    children.emplace_back(mproc::ProcessOptions{.name = "streamed"}, [] { mproc::exit(StreamedReason{}); });
    std::string codes = "exitcodes";
    for (auto& child : children) {  // one at a time, so that the reasons arrive in order
        child.start();
        child.join();
        codes += " " + std::to_string(*child.exitcode());
    }
    std::printf("%s\n", codes.c_str());
    mproc::exit(std::string("main reason"));
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    const std::map<std::string, std::function<int()>> scenarios = {
        {"unflushed_output", unflushed_output},
        {"exit_joins_non_daemon", exit_joins_non_daemon},
        {"exit_terminates_daemon", exit_terminates_daemon},
        {"child_skips_parent_exit_handlers", child_skips_parent_exit_handlers},
        {"exit_log_sequence", exit_log_sequence},
        {"std_exit_in_child_logs", std_exit_in_child_logs},
        {"uncaught_exception", uncaught_exception},
        {"orphans", orphans},
        {"exit_reasons", exit_reasons},
    };
    if (argc < 2 || !scenarios.count(argv[1])) {
        std::fprintf(stderr, "usage: %s <scenario>\n", argv[0]);
        return 2;
    }
    return scenarios.at(argv[1])();
}
