#pragma once
// The shared state behind every Process handle, and the exit-status decoding used everywhere.
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "mproc/authkey.hpp"
#include "mproc/detail/target.hpp"
#include "mproc/process.hpp"

namespace mproc::detail {

enum class ProcessRole {
    child,        // a process this process created (or will create) with start()
    main,         // the main process, seen from itself
    parent_view,  // a child's view of its parent (Python's _ParentProcess)
};

struct ProcessState {
    ProcessRole role = ProcessRole::child;

    // Identity and configuration, fixed at construction (Python's _identity and _config).
    std::vector<int> identity;  // Process-2:1 has {2, 1}; empty for the main process
    std::string name;           // explicit name; empty until start() fixes the default one
    std::string type_name;      // class name, fixed by start() from the dynamic type
    bool daemon = false;
    int parent_pid = 0;         // pid of the creating process
    std::optional<AuthKey> authkey;
    std::shared_ptr<Target> target;
    std::optional<StartMethod> method;  // unset: the default, fixed by start()
    std::optional<bool> die_with_parent_option;
    bool die_with_parent = false;       // fixed by start()

    // Life cycle. `mutex` orders reaping with polling, so that a status is collected once.
    std::mutex mutex;
    bool started = false;
    bool closed = false;
    int pid = 0;
    UniqueFd pidfd;      // readable once the process has ended; signals go through it
    UniqueFd status_fd;  // forkserver children: the exit code arrives here (forkserver.cpp)
    bool reaped_elsewhere = false;  // forkserver children: the server reaps, not this process
    std::optional<int> exitcode;

    // Reaps the child if it has ended, without blocking; returns the exit code once known.
    std::optional<int> poll();
    // Waits until the child has ended or the deadline passed (nullopt: forever).
    std::optional<int> wait(std::optional<std::chrono::nanoseconds> timeout);
    void send_signal(int signal_number);
    std::string display_name() const;
    // The descriptor that becomes readable when the process has ended (Process::sentinel()).
    int sentinel_fd() const noexcept { return pidfd.get(); }

private:
    std::optional<int> poll_locked();
    // A forkserver child's exit code, once the child has ended.
    std::optional<int> collect_reported_exitcode();
};

// The exit code reported when it could not be learnt (a forkserver child whose server died).
inline constexpr int kExitcodeUnknown = 255;

// Python's exit code from a waitpid status: the exit status, or -N for signal N.
int exitcode_from_wait_status(int status) noexcept;

}  // namespace mproc::detail
