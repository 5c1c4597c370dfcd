// The forkserver start method. The server is this program executed anew (so it has one thread
// and none of the parent's state), started on first use; it forks a child per request.
//
// Channel: a socketpair whose other end only the server holds, so no other process can send it
// requests. Each request is an 8-byte length and the child's encoded start request, with two
// descriptors attached: the write end of the child's status pipe and a pidfd of the parent (the
// child's parent_process()). The server answers with the child's pid and a pidfd of the child.
// When a child ends, the server reaps it and writes its exit code (int32) to its status pipe:
// that pipe is the child's sentinel in the parent.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>

#include "launch/child_request.hpp"
#include "launch/launcher.hpp"
#include "mproc/errors.hpp"
#include "runtime/process_state.hpp"
#include "runtime/runtime.hpp"

namespace mproc::detail {
namespace {

constexpr int kAnswerTimeoutMs = 30'000;

void close_if_open(int& fd) noexcept {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

// Sends `data` with `fds` attached to its first byte.
bool send_with_fds(int socket, const void* data, std::size_t size, const int* fds, int fd_count) {
    iovec iov{const_cast<void*>(data), size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd_count > 0) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
        std::memcpy(CMSG_DATA(c), fds, sizeof(int) * fd_count);
    }
    for (;;) {
        ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        auto sent = static_cast<std::size_t>(n);
        if (sent == size) return true;
        return send_all(socket, static_cast<const std::byte*>(data) + sent, size - sent);
    }
}

// Receives exactly `size` bytes, collecting up to `max_fds` descriptors that come with them.
// Returns false on end of file before the first byte; throws on a short read or an error.
bool receive_with_fds(int socket, void* data, std::size_t size, int* fds, int max_fds, int& fd_count) {
    fd_count = 0;
    std::size_t got = 0;
    while (got < size) {
        iovec iov{static_cast<char*>(data) + got, size - got};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw OSError("forkserver channel", errno);
        }
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            int count = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            const int* received = reinterpret_cast<const int*>(CMSG_DATA(c));
            for (int i = 0; i < count; ++i) {
                if (fd_count < max_fds) {
                    fds[fd_count++] = received[i];
                } else {
                    ::close(received[i]);
                }
            }
        }
        if (msg.msg_flags & MSG_CTRUNC) throw ProcessError("forkserver channel: descriptors were truncated");
        if (n == 0) {
            if (got == 0) return false;
            throw ProcessError("forkserver channel: end of file inside a message");
        }
        got += static_cast<std::size_t>(n);
    }
    return true;
}

bool read_exact(int fd, void* data, std::size_t size) {
    std::size_t got = 0;
    while (got < size) {
        ssize_t n = ::read(fd, static_cast<char*>(data) + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        got += static_cast<std::size_t>(n);
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// The parent's side

class ForkServerLauncher final : public Launcher {
public:
    StartMethod method() const noexcept override { return StartMethod::forkserver; }

    LaunchedChild launch(const LaunchRequest& request) override {
        std::lock_guard lock(mutex_);
        // One retry: a server that died (killed, or ended with an old parent) is started again.
        for (int attempt = 0;; ++attempt) {
            ensure_running();
            LaunchedChild child;
            if (try_launch(request, child)) return child;
            stop_server();
            if (attempt == 1) throw ProcessError("the fork server stopped answering; it was restarted once and failed again");
        }
    }

    // In a forked child: the parent's server is not ours to talk to.
    void forget() noexcept {
        close_if_open(channel_);
        close_if_open(server_pidfd_);
        close_if_open(self_pidfd_);
        server_pid_ = 0;
        exit_task_registered_ = false;
        new (&mutex_) std::mutex();
    }

    int pid() noexcept {
        std::lock_guard lock(mutex_);
        return server_pid_;
    }

    void shutdown() noexcept {
        std::lock_guard lock(mutex_);
        stop_server();
    }

private:
    void ensure_running() {
        if (channel_ >= 0) {
            pollfd p{server_pidfd_, POLLIN, 0};
            if (::poll(&p, 1, 0) == 0) return;  // alive
            stop_server();
        }
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) throw OSError("socketpair", errno);
        int pid = 0;
        try {
            pid = spawn_program(sv[1], kForkServerFdVariable);
        } catch (...) {
            ::close(sv[0]);
            ::close(sv[1]);
            throw;
        }
        ::close(sv[1]);
        channel_ = sv[0];
        server_pid_ = pid;
        server_pidfd_ = open_pidfd(pid);
        if (self_pidfd_ < 0) self_pidfd_ = open_pidfd(::getpid());
        if (!exit_task_registered_) {
            // After the exit sequence has joined the children, whose exit codes come through the
            // server, let the server go.
            Runtime::get().at_exit(ExitPhase::after_children, [this] { shutdown(); });
            exit_task_registered_ = true;
        }
    }

    void stop_server() noexcept {
        close_if_open(channel_);  // the server ends at end of file
        if (server_pid_ > 0) {
            pollfd p{server_pidfd_, POLLIN, 0};
            if (server_pidfd_ >= 0 && ::poll(&p, 1, 1000) == 0) ::kill(server_pid_, SIGKILL);
            while (::waitpid(server_pid_, nullptr, 0) < 0 && errno == EINTR) {
            }
        }
        close_if_open(server_pidfd_);
        server_pid_ = 0;
    }

    bool try_launch(const LaunchRequest& request, LaunchedChild& child) {
        int status[2];
        if (::pipe2(status, O_CLOEXEC) < 0) throw OSError("pipe2", errno);
        const std::uint64_t length = request.encoded_child.size();
        const int fds[2] = {status[1], self_pidfd_};
        bool sent = send_with_fds(channel_, &length, sizeof length, fds, self_pidfd_ >= 0 ? 2 : 1) &&
                    send_all(channel_, request.encoded_child.data(), request.encoded_child.size());
        ::close(status[1]);
        if (!sent) {
            ::close(status[0]);
            return false;
        }
        pollfd p{channel_, POLLIN, 0};
        int ready;
        do {
            ready = ::poll(&p, 1, kAnswerTimeoutMs);
        } while (ready < 0 && errno == EINTR);
        std::int32_t pid = 0;
        int pidfd = -1, count = 0;
        bool answered = false;
        try {
            answered = ready > 0 && receive_with_fds(channel_, &pid, sizeof pid, &pidfd, 1, count);
        } catch (const ProcessError&) {
            answered = false;
        }
        if (!answered) {
            ::close(status[0]);
            if (count > 0) ::close(pidfd);
            return false;
        }
        if (pid <= 0) {
            ::close(status[0]);
            if (count > 0) ::close(pidfd);
            throw OSError("fork in the fork server", -pid);
        }
        ::fcntl(status[0], F_SETFL, O_NONBLOCK);
        child = {pid, count > 0 ? pidfd : -1, status[0]};
        return true;
    }

    std::mutex mutex_;
    int channel_ = -1;
    int server_pid_ = 0;
    int server_pidfd_ = -1;
    int self_pidfd_ = -1;
    bool exit_task_registered_ = false;
};

ForkServerLauncher* the_forkserver_launcher = nullptr;

}  // namespace

Launcher& forkserver_launcher() {
    static auto* launcher = [] {
        the_forkserver_launcher = new ForkServerLauncher;  // never destroyed: usable during exit
        return the_forkserver_launcher;
    }();
    return *launcher;
}

int forkserver_pid() noexcept {
    return the_forkserver_launcher != nullptr ? the_forkserver_launcher->pid() : 0;
}

void reset_forkserver_after_fork() noexcept {
    if (the_forkserver_launcher != nullptr) the_forkserver_launcher->forget();
}

// ---------------------------------------------------------------------------------------------
// The server's side

void run_forkserver(int channel) {
    sigset_t child_signal;
    sigemptyset(&child_signal);
    sigaddset(&child_signal, SIGCHLD);
    sigset_t previous_mask;
    ::sigprocmask(SIG_BLOCK, &child_signal, &previous_mask);
    int signals = ::signalfd(-1, &child_signal, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signals < 0) ::_exit(70);

    std::map<int, int> status_pipes;  // child pid -> write end of its status pipe
    auto report_ended_children = [&status_pipes] {
        for (;;) {
            int status = 0;
            pid_t pid = ::waitpid(-1, &status, WNOHANG);
            if (pid <= 0) break;
            auto it = status_pipes.find(pid);
            if (it == status_pipes.end()) continue;
            std::int32_t code = exitcode_from_wait_status(status);
            (void)!::write(it->second, &code, sizeof code);
            ::close(it->second);
            status_pipes.erase(it);
        }
    };

    for (;;) {
        pollfd p[2] = {{channel, POLLIN, 0}, {signals, POLLIN, 0}};
        int r = ::poll(p, 2, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p[1].revents & POLLIN) {
            signalfd_siginfo info;
            while (::read(signals, &info, sizeof info) > 0) {
            }
            report_ended_children();
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;

        std::uint64_t length = 0;
        int fds[2] = {-1, -1};
        int count = 0;
        bool more = false;
        try {
            more = receive_with_fds(channel, &length, sizeof length, fds, 2, count);
        } catch (const std::exception&) {
            more = false;
        }
        if (!more) break;  // the parent has gone, or asked us to stop
        std::vector<std::byte> body(length);
        if (!read_exact(channel, body.data(), body.size()) || count < 1) break;
        const int status_write = fds[0];
        const int parent_pidfd = count > 1 ? fds[1] : -1;

        const int server_pid = ::getpid();
        pid_t pid = ::fork();
        if (pid == 0) {
            ::sigprocmask(SIG_SETMASK, &previous_mask, nullptr);
            // Keep only stdio and the parent's pidfd: siblings' status pipes and the channel are
            // the server's.
            int keep = parent_pidfd;
            if (keep >= 0 && keep != kChannelFd) {
                ::dup2(keep, kChannelFd);
                keep = kChannelFd;
            }
            ::syscall(SYS_close_range, keep >= 0 ? keep + 1 : 3, ~0U, 0);
            if (keep < 0) ::syscall(SYS_close_range, 3, ~0U, 0);
            run_child_request(body, server_pid, keep);
        }
        std::int32_t answer = pid > 0 ? pid : -errno;
        int child_pidfd = pid > 0 ? open_pidfd(pid) : -1;
        if (pid > 0) {
            status_pipes[pid] = status_write;
        } else {
            ::close(status_write);
        }
        if (parent_pidfd >= 0) ::close(parent_pidfd);
        bool answered = send_with_fds(channel, &answer, sizeof answer, &child_pidfd, child_pidfd >= 0 ? 1 : 0);
        if (child_pidfd >= 0) ::close(child_pidfd);
        if (!answered) break;
        report_ended_children();
    }
    // Children still running keep running; their parents learn of the lost status from the
    // closed status pipes.
    ::_exit(0);
}

}  // namespace mproc::detail
