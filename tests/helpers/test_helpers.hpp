#pragma once
// Helpers for mproc's tests: counting open descriptors, finding zombies, running code in a
// separate throwaway process so that a test can observe a whole program's exit.
#include <functional>
#include <string>
#include <vector>

namespace mproc::testing {

// The number of entries in /proc/self/fd.
int count_open_fds();

// The pids of this process's children that are zombies (exited, not reaped).
std::vector<int> zombie_children();

// True when `pid` no longer exists or is a zombie.
bool process_gone(int pid);

struct RunResult {
    int exit_status = -1;   // exit code, or -signal
    std::string out;        // everything written to stdout
    std::string err;        // everything written to stderr
};

// Forks a plain (non-mproc) child whose stdout and stderr are pipes, runs `body` in it and ends
// it with std::exit(body's return value), so that the child goes through the same exit path as a
// real program's main. Waits for it and returns what it wrote.
RunResult run_as_program(const std::function<int()>& body);

}  // namespace mproc::testing
