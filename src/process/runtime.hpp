#pragma once
// The per-process registry behind current_process(), active_children() and the exit-time
// handling: which process this is, which children it started and has not reaped, and the work
// to do when it ends.
//
// One Runtime exists per process, created on first use and never destroyed: static destructors
// run in an order mproc does not control, and the exit handler must still find it afterwards.
// After fork the child resets it (become_child) before running any user code.
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mproc/process.hpp"
#include "base/fork_aware_mutex.hpp"
#include "base/lifecycle.hpp"
#include "process/process_state.hpp"

namespace mproc::detail {

// Where a child comes from: its logical parent, and the process that created it (the parent
// under fork and spawn, the fork server under forkserver).
struct ChildOrigin {
    std::string parent_name;
    int parent_pid = 0;
    int os_parent_pid = 0;
    int parent_pidfd = -1;  // a pidfd of the logical parent, when one was handed over
    int exit_status_fd = -1;  // where to write the exit code before exiting (forkserver children)
};


class Runtime {
public:
    static Runtime& get();

    std::shared_ptr<ProcessState> current_state() { return current_; }
    Process& current_process() { return current_handle_; }
    std::optional<Process> parent_process();
    // The pid of parent_process(); 0 in the main process.
    int parent_pid();

    // Identity for a new Process object: this process's identity plus the next counter value.
    std::vector<int> next_identity();

    void add_child(std::shared_ptr<ProcessState> child);
    void forget_child(const ProcessState* child);
    // Reaps ended children and returns the live ones (Python's active_children()).
    std::vector<std::shared_ptr<ProcessState>> live_children();

    // In a new child: make `self` the current process; forget the parent's children, counters,
    // exit tasks and launchers; remember the parent.
    void become_child(std::shared_ptr<ProcessState> self, const ChildOrigin& origin);

    // Python's util._exit_function: log, run exit tasks, terminate daemonic children, join the
    // others. Runs at most once per process.
    void run_exit_sequence();

    // Just before this process exits: writes `code` where its parent reads it (ChildOrigin's
    // exit_status_fd), if it has such a place and the descriptor is still the one it was given.
    void report_exit_status(int code) noexcept;

    // The child bootstrap's thread, for mproc::exit (which unwinds only on that thread).
    bool in_child_bootstrap_thread() const;
    void mark_child_bootstrap_thread();

    AuthKey authkey();


    // argv as given to mproc::init, for the programs spawn executes ({"mproc"} without init).
    void set_argv(int argc, char** argv);
    std::vector<char*> argv_for_children();
    bool initialized() const noexcept { return initialized_; }
    // True in a program that mproc executed as a child or fork server while mproc::init has not
    // run yet: starting processes then would recurse.
    bool bootstrapping() const noexcept { return bootstrapping_; }

    // The default start method (context.cpp keeps the choice; the runtime only stores it).
    std::optional<StartMethod> chosen_start_method;

private:
    Runtime();

    ForkAwareMutex mutex_;  // guards the members below
    std::shared_ptr<ProcessState> current_;
    Process current_handle_;
    std::shared_ptr<ProcessState> parent_;
    std::string parent_name_;
    int parent_pid_ = 0;
    int parent_pidfd_ = -1;
    // ChildOrigin::exit_status_fd of this process, and the file it was (a program may close
    // descriptors it does not know of, and the number may then name another file).
    int exit_status_fd_ = -1;
    std::pair<dev_t, ino_t> exit_status_file_{};
    bool exit_status_fd_is_ours() const noexcept;
    std::vector<std::string> argv_;
    bool initialized_ = false;
    bool bootstrapping_ = false;
    std::vector<std::shared_ptr<ProcessState>> children_;
    int counter_ = 0;
    bool exiting_ = false;
};

// The default start method, fixed on first use from set_start_method, MPROC_START_METHOD, or fork.
StartMethod default_start_method();

// The child's life once it exists: become the current process, run, exit. Never returns.
[[noreturn]] void child_bootstrap(Process& self, const std::shared_ptr<ProcessState>& state,
                                  const ChildOrigin& origin);

// Writes the reason given to mproc::exit and a newline to stderr (stdout is flushed first, so
// that what the process printed comes before it).
void write_exit_reason(const std::string& reason);

}  // namespace mproc::detail
