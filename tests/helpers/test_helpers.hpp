#pragma once
// Helpers for mproc's tests: counting descriptors and zombies, capturing what children write,
// and running the scenario program (tests/helpers/scenarios.cpp) as a whole program.
#include <chrono>
#include <string>
#include <vector>

namespace mproc::testing {

// The number of entries in /proc/self/fd.
int count_open_fds();

// The number of entries in a directory such as /proc/self/task (this process's threads).
int count_entries(const char* directory);

// The pids of this process's children that are zombies (exited, not reaped).
std::vector<int> zombie_children();

// True when `pid` no longer exists or is a zombie.
bool process_gone(int pid);

// Redirects this process's stderr (fd 2) into a pipe while alive, so that children started
// meanwhile write there too; text() collects what was written once the writers are done.
class CapturedStderr {
public:
    CapturedStderr();
    ~CapturedStderr();
    CapturedStderr(const CapturedStderr&) = delete;
    CapturedStderr& operator=(const CapturedStderr&) = delete;
    // Restores fd 2 and returns everything written (children must have ended).
    std::string text();

private:
    int saved_ = -1;
    int read_end_ = -1;
    bool restored_ = false;
    std::string collected_;
};

struct ProgramResult {
    int exit_status = -1;  // exit code, or -signal
    std::string out;
    std::string err;
    std::vector<std::string> out_lines() const;
    std::vector<std::string> err_lines() const;
};

// Runs the scenario program with `args` (stdin /dev/null, stdout and stderr on pipes) and
// waits for it; kills it after `timeout`. `environment` entries ("NAME=value") are added to the
// program's environment.
ProgramResult run_scenario(const std::vector<std::string>& args,
                           const std::vector<std::string>& environment = {},
                           std::chrono::seconds timeout = std::chrono::seconds(30));

// Runs any program (argv[0] is its path) the way run_scenario does.
ProgramResult run_program(const std::vector<std::string>& argv, const std::vector<std::string>& environment = {},
                          std::chrono::seconds timeout = std::chrono::seconds(30));

// The path of the scenario program.
const char* scenario_program();

std::vector<std::string> split_lines(const std::string& text);

}  // namespace mproc::testing
