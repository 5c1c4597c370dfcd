// The spawn start method: the running binary is executed anew with a socket on descriptor 3;
// mproc::init() in the new program reads its start request from it and becomes the child.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "process/channel.hpp"
#include "process/launcher.hpp"
#include "mproc/errors.hpp"
#include "process/runtime.hpp"

extern char** environ;

namespace mproc::detail {

Launcher& fork_launcher();
Launcher& forkserver_launcher();
void reset_forkserver_after_fork() noexcept;

const char* program_path() noexcept { return "/proc/self/exe"; }

int spawn_program(int channel, const char* variable, bool bind_now) {
    // The channel must not already be descriptor 3, where dup2 would keep its close-on-exec flag.
    UniqueFd moved;
    if (channel == kChannelFd) {
        moved.reset(::fcntl(channel, F_DUPFD_CLOEXEC, kChannelFd + 1));
        if (!moved) throw OSError("fcntl(F_DUPFD_CLOEXEC)", errno);
        channel = moved.get();
    }

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, channel, kChannelFd);
    posix_spawn_file_actions_addclosefrom_np(&actions, kChannelFd + 1);

    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<std::string> environment_storage;
    std::vector<char*> environment;
    const std::string prefix = std::string(variable) + "=";
    for (char** e = environ; e && *e; ++e) {
        if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) environment.push_back(*e);
    }
    environment_storage.reserve(3);  // the pointers below point into it
    environment_storage.push_back(prefix + std::to_string(kChannelFd));
    if (bind_now && std::getenv("LD_BIND_NOW") == nullptr) {
        environment_storage.push_back("LD_BIND_NOW=1");
        environment_storage.push_back(std::string(kForkServerBindNowVariable) + "=1");
    }
    for (auto& variable_setting : environment_storage) environment.push_back(variable_setting.data());
    environment.push_back(nullptr);

    std::vector<char*> argv = Runtime::get().argv_for_children();

    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, program_path(), &actions, &attributes, argv.data(), environment.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    moved.reset();
    if (rc != 0) throw OSError("posix_spawn of " + std::string(program_path()), rc);
    return pid;
}

namespace {

class SpawnLauncher final : public Launcher {
public:
    StartMethod method() const noexcept override { return StartMethod::spawn; }

    LaunchedChild launch(const LaunchRequest& request) override {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) throw OSError("socketpair", errno);
        UniqueFd ours(sv[0]);
        UniqueFd theirs(sv[1]);
        const int pid = spawn_program(theirs.get(), kSpawnFdVariable);
        theirs.reset();
        UniqueFd pidfd(open_pidfd(pid));
        if (!pidfd) {
            int err = errno;
            ours.reset();
            ::kill(pid, SIGKILL);
            while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
            }
            throw OSError("pidfd_open (Linux 5.3 or later is required)", err);
        }
        // A child that dies before reading its request shows in its exit code; the parent must
        // not fail start() for it, nor block: a closed peer ends the write.
        send_with_descriptors(ours.get(), request.encoded_child.data(), request.encoded_child.size(), request.descriptors);
        ours.reset();
        return {pid, std::move(pidfd), {}};
    }
};

}  // namespace

Launcher& launcher_for(StartMethod method) {
    static auto* spawn = new SpawnLauncher;  // never destroyed: usable during exit
    switch (method) {
        case StartMethod::fork: return fork_launcher();
        case StartMethod::spawn: return *spawn;
        case StartMethod::forkserver: return forkserver_launcher();
    }
    return fork_launcher();
}

void reset_launchers_after_fork() noexcept { reset_forkserver_after_fork(); }

}  // namespace mproc::detail
