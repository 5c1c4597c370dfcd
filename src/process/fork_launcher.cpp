// The fork start method: the child is a copy of the parent, so any callable can run in it.
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <utility>

#include "process/launcher.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

int open_pidfd(int pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

namespace {

class ForkLauncher final : public Launcher {
public:
    StartMethod method() const noexcept override { return StartMethod::fork; }

    LaunchedChild launch(const LaunchRequest& request) override {
        // fork() through libc, not clone3(CLONE_PIDFD): libc's fork runs the atfork handlers
        // that keep malloc and stdio usable in the child. The pidfd is opened right after; the
        // child cannot have been reaped in between because only this process may reap it.
        pid_t pid = ::fork();
        if (pid < 0) throw OSError("fork", errno);
        if (pid == 0) {
            request.fork_child_main();
            ::_exit(70);  // unreachable: the bootstrap always ends with _exit
        }
        UniqueFd pidfd(open_pidfd(pid));
        if (!pidfd) {
            int err = errno;
            ::kill(pid, SIGKILL);
            int status = 0;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            throw OSError("pidfd_open (Linux 5.3 or later is required)", err);
        }
        return {pid, std::move(pidfd), {}};
    }
};

}  // namespace

Launcher& fork_launcher() {
    static auto* launcher = new ForkLauncher;  // never destroyed: usable during exit
    return *launcher;
}

}  // namespace mproc::detail
