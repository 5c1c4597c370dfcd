#pragma once
// A strategy per start method (Python's Popen classes): how a child process comes to exist.
// The launcher only creates the process; what runs in it is the runtime's child bootstrap.
#include <cstddef>
#include <functional>
#include <vector>

#include "base/unique_fd.hpp"
#include "mproc/process.hpp"

namespace mproc::detail {

struct LaunchRequest {
    // fork: runs in the child and never returns.
    std::function<void()> fork_child_main;
    // spawn, forkserver: the encoded start request the child decodes (child_request.hpp), and the
    // descriptors that travel with it (detail/descriptors.hpp).
    std::vector<std::byte> encoded_child;
    std::vector<int> descriptors;
};

struct LaunchedChild {
    int pid = 0;
    UniqueFd pidfd;      // signals, and the sentinel of direct children
    UniqueFd status_fd;  // forkserver children: where the server writes the exit code (the sentinel)
};

class Launcher {
public:
    virtual ~Launcher() = default;
    virtual StartMethod method() const noexcept = 0;
    virtual LaunchedChild launch(const LaunchRequest& request) = 0;
};

Launcher& launcher_for(StartMethod method);

// In a freshly forked child: forget launcher state that belongs to the parent (the parent's fork
// server and its channel).
void reset_launchers_after_fork() noexcept;

// The pid of this process's fork server, or 0 when none runs (for tests of a dying server).
int forkserver_pid() noexcept;

// pidfd_open(2): a descriptor that becomes readable when `pid` ends; -1 with errno on failure.
int open_pidfd(int pid) noexcept;

// The program to execute for spawn and the fork server: the running binary.
const char* program_path() noexcept;

// Environment variables through which a re-executed program learns what it is.
inline constexpr const char* kSpawnFdVariable = "MPROC_SPAWN_FD";
inline constexpr const char* kForkServerFdVariable = "MPROC_FORKSERVER_FD";
// Set for a fork server whose LD_BIND_NOW mproc added (spawn_program's bind_now): the server takes
// both out of its environment again, so that its children do not pass them on.
inline constexpr const char* kForkServerBindNowVariable = "MPROC_FORKSERVER_BIND_NOW";
// The descriptor number the channel gets in a re-executed program.
inline constexpr int kChannelFd = 3;

// Starts `program` anew with the channel end `channel` as descriptor kChannelFd, the variable
// `variable`=kChannelFd added to the environment, every other descriptor above 2 closed, default
// signal dispositions and an empty signal mask. With `bind_now`, and no LD_BIND_NOW in the
// environment already, the dynamic linker resolves every symbol as the program starts (the fork
// server: each child it forks then inherits the resolved symbols instead of resolving those it
// calls, and writing them into pages it shares with the server, one by one). Returns the pid.
int spawn_program(int channel, const char* variable, bool bind_now = false);

// Reads from `fd` until end of file.
std::vector<std::byte> read_to_end(int fd);

// Writes all of `bytes` to the socket `fd` (MSG_NOSIGNAL). False when the peer has gone.
bool send_all(int fd, const std::byte* bytes, std::size_t size);

}  // namespace mproc::detail
