#pragma once
// The per-process registry behind current_process(), active_children() and the exit-time
// handling: which process this is, which children it started and has not reaped, and the work
// to do when it ends.
//
// One Runtime exists per process, created on first use and never destroyed: static destructors
// run in an order mproc does not control, and the exit handler must still find it afterwards.
// After fork the child resets it (become_child) before running any user code.
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mproc/process.hpp"
#include "runtime/process_state.hpp"

namespace mproc::detail {

// When an exit-time task runs relative to the handling of the remaining children (Python's
// finalizers with exitpriority >= 0 run before, the others after).
enum class ExitPhase { before_children, after_children };

class Runtime {
public:
    static Runtime& get();

    std::shared_ptr<ProcessState> current_state() { return current_; }
    Process& current_process() { return current_handle_; }
    std::optional<Process> parent_process();

    // Identity for a new Process object: this process's identity plus the next counter value.
    std::vector<int> next_identity();

    void add_child(std::shared_ptr<ProcessState> child);
    void forget_child(const ProcessState* child);
    // Reaps ended children and returns the live ones (Python's active_children()).
    std::vector<std::shared_ptr<ProcessState>> live_children();

    // Registers work for the exit sequence of this process (not inherited by children).
    void at_exit(ExitPhase phase, std::function<void()> task);

    // In a freshly forked child: make `self` the current process; forget the parent's children,
    // counters and exit tasks; remember the parent.
    void become_child(std::shared_ptr<ProcessState> self, const std::string& parent_name, int parent_pid);

    // Python's util._exit_function: log, run exit tasks, terminate daemonic children, join the
    // others. Runs at most once per process.
    void run_exit_sequence();

    // The child bootstrap's thread, for mproc::exit (which unwinds only on that thread).
    bool in_child_bootstrap_thread() const;
    void mark_child_bootstrap_thread();

    AuthKey authkey();

    std::mutex& mutex_for_fork() { return mutex_; }

private:
    Runtime();

    std::mutex mutex_;  // guards the members below; reset in a forked child
    std::shared_ptr<ProcessState> current_;
    Process current_handle_;
    std::shared_ptr<ProcessState> parent_;
    std::string parent_name_;
    int parent_pid_ = 0;
    std::vector<std::shared_ptr<ProcessState>> children_;
    int counter_ = 0;
    bool exiting_ = false;
    std::vector<std::function<void()>> before_children_tasks_;
    std::vector<std::function<void()>> after_children_tasks_;
};

// The child's life after fork: become the current process, run, exit. Never returns.
[[noreturn]] void child_bootstrap(Process& self, const std::shared_ptr<ProcessState>& state,
                                  const std::string& parent_name, int parent_pid);

}  // namespace mproc::detail
