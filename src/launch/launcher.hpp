#pragma once
// A strategy per start method (Python's Popen classes): how a child process comes to exist.
// The launcher only creates the process; what runs in it is the runtime's child bootstrap.
#include <functional>

namespace mproc::detail {

struct LaunchedChild {
    int pid = 0;
    int pidfd = -1;  // owned by the caller
};

class Launcher {
public:
    virtual ~Launcher() = default;
    virtual const char* method() const noexcept = 0;
    // Creates the child, in which `child_main` runs and never returns.
    virtual LaunchedChild launch(const std::function<void()>& child_main) = 0;
};

Launcher& fork_launcher();

// pidfd_open(2): a descriptor that becomes readable when `pid` ends; -1 with errno on failure.
int open_pidfd(int pid) noexcept;

}  // namespace mproc::detail
