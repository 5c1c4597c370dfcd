// Figures for mproc::Process, against fork/waitpid written directly.
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "harness.hpp"
#include "mproc/context.hpp"
#include "mproc/process.hpp"

extern char** environ;

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

void noop() {}

// The floor under start + join with fork: fork, _exit(0) in the child, waitpid.
void raw_fork_join() {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    bench::require(pid > 0, "fork failed");
    const int status = wait_for_exit(pid, 0);
    bench::require(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's exit status is not 0");
}

void start_and_join(mproc::Process child) {
    child.start();
    child.join();
    bench::require(child.exitcode() == 0, "the child's exit code is not 0");
}

[[noreturn]] void block_until_killed() {
    for (;;) ::pause();
}

const bench::Register start_join{{
    .name = "process.start_join.fork",
    .unit = bench::micros_per("process"),
    .description = "start + join of a child whose target does nothing; raw: fork, _exit(0) in the child, waitpid",
    .impls = {
        {"mproc", bench::each([] { start_and_join(mproc::Process([] {})); })},
        {"raw", bench::each(raw_fork_join)},
    },
}};

// Spawn: the program executed anew; raw is posix_spawn of the same binary, which exits at once.
const bench::Register start_join_spawn{{
    .name = "process.start_join.spawn",
    .unit = bench::micros_per("process"),
    .description = "start + join of a no-op child under spawn; raw: posix_spawn of this binary, which exits at "
                   "once, and waitpid",
    .impls = {
        {"mproc", bench::each([] { start_and_join(mproc::spawn_context.Process(noop)); })},
        {"raw", bench::each([] {
             char program[] = "/proc/self/exe";
             char exit_at_once[] = "--exit-at-once";
             char* argv[] = {program, exit_at_once, nullptr};
             pid_t pid = 0;
             bench::require(::posix_spawn(&pid, program, nullptr, nullptr, argv, environ) == 0, "posix_spawn failed");
             const int status = wait_for_exit(pid, 0);
             bench::require(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's exit status is not 0");
         })},
    },
}};

// Forkserver: a request to the server, which forks; raw is a fork of this process.
const bench::Register start_join_forkserver{{
    .name = "process.start_join.forkserver",
    .unit = bench::micros_per("process"),
    .description = "start + join of a no-op child under forkserver (server already running); raw: fork, _exit(0) "
                   "in the child, waitpid",
    .impls = {
        {"mproc", [](std::size_t iterations) {
             auto warm_up = mproc::forkserver_context.Process(noop);  // the server starts once, outside the timing
             warm_up.start();
             warm_up.join();
             return bench::time_loop(iterations, [] { start_and_join(mproc::forkserver_context.Process(noop)); });
         }},
        {"raw", bench::each(raw_fork_join)},
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
