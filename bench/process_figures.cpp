// Figures for mproc::Process, against fork/waitpid written directly.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "harness.hpp"
#include "mproc/process.hpp"

namespace {

int wait_for_exit(pid_t pid, int options) {
    int status = 0;
    pid_t got;
    do {
        got = ::waitpid(pid, &status, options);
    } while (got < 0 && errno == EINTR);
    bench::require(got >= 0, "waitpid failed");
    return got == 0 ? -1 : status;
}

[[noreturn]] void block_until_killed() {
    for (;;) ::pause();
}

const bench::Register start_join{{
    .name = "process.start_join.fork",
    .unit = bench::micros_per("process"),
    .description = "start + join of a child whose target does nothing; raw: fork, _exit(0) in the child, waitpid",
    .impls = {
        {"mproc", bench::each([] {
             mproc::Process child([] {});
             child.start();
             child.join();
             bench::require(child.exitcode() == 0, "the child's exit code is not 0");
         })},
        {"raw", bench::each([] {
             const pid_t pid = ::fork();
             if (pid == 0) ::_exit(0);
             bench::require(pid > 0, "fork failed");
             const int status = wait_for_exit(pid, 0);
             bench::require(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's exit status is not 0");
         })},
    },
}};

// The cost of asking whether a running child is still there, as a supervisor loop does; the
// child is started before the batch and killed after it.
const bench::Register is_alive{{
    .name = "process.is_alive",
    .unit = bench::nanos_per("call"),
    .description = "is_alive() on a running child; raw: waitpid(pid, WNOHANG)",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             mproc::Process child(block_until_killed);
             child.start();
             const bench::Seconds took =
                 bench::time_loop(iterations, [&] { bench::require(child.is_alive(), "the child is not alive"); });
             child.kill();
             child.join();
             return took;
         }},
        {"raw", [](std::size_t iterations) {
             const pid_t pid = ::fork();
             if (pid == 0) block_until_killed();
             bench::require(pid > 0, "fork failed");
             const bench::Seconds took = bench::time_loop(
                 iterations, [&] { bench::require(wait_for_exit(pid, WNOHANG) == -1, "the child is not alive"); });
             ::kill(pid, SIGKILL);
             wait_for_exit(pid, 0);
             return took;
         }},
    },
}};

}  // namespace
