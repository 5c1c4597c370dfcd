// The forkserver start method. The server is this program executed anew (so it has one thread
// and none of the parent's state), started on first use; it forks a child per request.
//
// Channel: a socketpair whose other end only the server holds, so no other process can send it
// requests. Each request is a header and the child's encoded start request, sent in one message,
// with two descriptors attached: one end of the child's status socket and a pidfd of the parent
// (the child's parent_process()). The server answers with the child's pid and a pidfd of the child.
//
// The exit code (int32) reaches the status socket from the child itself, just before it exits, and
// again from the server when it has reaped the child (the only report when a signal ended it).
// The parent waits on the child's pidfd, which is readable once the child has ended, then reads
// the code: in the common case it is already there, and the parent is woken once, by the child's
// end, not a second time by the server's report. A socket, not a pipe, so that both writers send
// with MSG_NOSIGNAL: a parent that has read the first report may have closed its end already.
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>
#include <mutex>
#include <utility>

#include "base/deadline.hpp"
#include "process/channel.hpp"
#include "process/child_request.hpp"
#include "process/launcher.hpp"
#include "mproc/errors.hpp"
#include "process/process_state.hpp"
#include "process/runtime.hpp"

namespace mproc::detail {
namespace {

constexpr auto kAnswerTimeout = std::chrono::seconds(30);

// The header of a request; the descriptors attached to it are the status socket's far end, the
// parent's pidfd when has_parent_pidfd, then the request's own descriptors.
struct RequestHeader {
    std::uint64_t length = 0;
    std::uint32_t descriptor_count = 0;
    std::uint32_t has_parent_pidfd = 0;
};

// Descriptors received with a message, by number (channel.hpp hands them over as ints).
void close_all(const std::vector<int>& fds) noexcept {
    for (int fd : fds) close_fd(fd);
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
        channel_.reset();
        server_pidfd_.reset();
        self_pidfd_.reset();
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
        if (channel_) {
            pollfd p{server_pidfd_.get(), POLLIN, 0};
            if (::poll(&p, 1, 0) == 0) return;  // alive
            stop_server();
        }
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) throw OSError("socketpair", errno);
        UniqueFd ours(sv[0]);
        UniqueFd theirs(sv[1]);
        const int pid = spawn_program(theirs.get(), kForkServerFdVariable, /*bind_now=*/true);
        theirs.reset();
        channel_ = std::move(ours);
        server_pid_ = pid;
        server_pidfd_.reset(open_pidfd(pid));
        if (!self_pidfd_) self_pidfd_.reset(open_pidfd(::getpid()));
        if (!exit_task_registered_) {
            // After the exit sequence has joined the children, whose exit codes come through the
            // server, let the server go.
            at_exit(ExitPhase::after_children, [this] { shutdown(); });
            exit_task_registered_ = true;
        }
    }

    void stop_server() noexcept {
        channel_.reset();  // the server ends at end of file
        if (server_pid_ > 0) {
            pollfd p{server_pidfd_.get(), POLLIN, 0};
            if (server_pidfd_ && ::poll(&p, 1, 1000) == 0) ::kill(server_pid_, SIGKILL);
            while (::waitpid(server_pid_, nullptr, 0) < 0 && errno == EINTR) {
            }
        }
        server_pidfd_.reset();
        server_pid_ = 0;
    }

    bool try_launch(const LaunchRequest& request, LaunchedChild& child) {
        int status[2];
        // Non-blocking: the parent reads its end only once the child has ended (poll()).
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, status) < 0)
            throw OSError("socketpair", errno);
        UniqueFd status_read(status[0]);
        UniqueFd status_write(status[1]);
        RequestHeader header;
        header.length = request.encoded_child.size();
        header.descriptor_count = static_cast<std::uint32_t>(request.descriptors.size());
        header.has_parent_pidfd = self_pidfd_ ? 1 : 0;
        std::vector<int> fds = {status_write.get()};
        if (self_pidfd_) fds.push_back(self_pidfd_.get());
        fds.insert(fds.end(), request.descriptors.begin(), request.descriptors.end());
        // One message: a server woken by the header finds the body there too.
        std::vector<std::byte> message(sizeof header + request.encoded_child.size());
        std::memcpy(message.data(), &header, sizeof header);
        std::memcpy(message.data() + sizeof header, request.encoded_child.data(), request.encoded_child.size());
        const bool sent = send_with_descriptors(channel_.get(), message.data(), message.size(), fds);
        status_write.reset();  // the server holds its copy
        if (!sent) return false;
        pollfd p{channel_.get(), POLLIN, 0};
        const Deadline answer_by = Deadline::after(kAnswerTimeout);  // an interruption does not restart it
        int ready;
        do {
            ready = ::poll(&p, 1, answer_by.poll_timeout_ms());
        } while (ready < 0 && errno == EINTR);
        std::int32_t pid = 0;
        std::vector<int> answer_fds;
        bool answered = false;
        try {
            answered = ready > 0 && receive_with_descriptors(channel_.get(), &pid, sizeof pid, answer_fds);
        } catch (const ProcessError&) {
            answered = false;
        }
        if (!answered || pid <= 0 || answer_fds.size() != 1) {
            status_read.reset();
            close_all(answer_fds);
            if (answered && pid <= 0) throw OSError("fork in the fork server", -pid);
            return false;
        }
        child = {pid, UniqueFd(answer_fds[0]), std::move(status_read)};
        return true;
    }

    std::mutex mutex_;
    UniqueFd channel_;
    int server_pid_ = 0;
    UniqueFd server_pidfd_;
    UniqueFd self_pidfd_;
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

    std::map<int, UniqueFd> status_sockets;  // child pid -> its status socket's far end
    auto report_ended_children = [&status_sockets] {
        for (;;) {
            int status = 0;
            pid_t pid = ::waitpid(-1, &status, WNOHANG);
            if (pid <= 0) break;
            auto it = status_sockets.find(pid);
            if (it == status_sockets.end()) continue;
            std::int32_t code = exitcode_from_wait_status(status);
            (void)!::send(it->second.get(), &code, sizeof code, MSG_NOSIGNAL);
            status_sockets.erase(it);  // closes the socket
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

        RequestHeader header;
        std::vector<int> fds;
        bool more = false;
        try {
            more = receive_with_descriptors(channel, &header, sizeof header, fds);
        } catch (const std::exception&) {
            more = false;
        }
        if (!more) break;  // the parent has gone, or asked us to stop
        const std::size_t expected = 1 + header.has_parent_pidfd + header.descriptor_count;
        std::vector<std::byte> body;
        bool complete = fds.size() == expected;
        if (complete) {
            body.resize(header.length);
            complete = read_exact(channel, body.data(), body.size());
        }
        if (!complete) {  // only the parent can write here: a malformed request means it is broken
            close_all(fds);
            break;
        }
        const int status_write = fds[0];
        const int parent_pidfd = header.has_parent_pidfd ? fds[1] : -1;
        std::vector<int> request_fds(fds.begin() + 1 + header.has_parent_pidfd, fds.end());

        const int server_pid = ::getpid();
        pid_t pid = ::fork();
        if (pid == 0) {
            ::sigprocmask(SIG_SETMASK, &previous_mask, nullptr);
            // Keep stdio, the status socket (the child reports its own exit code), the parent's
            // pidfd and the request's descriptors; the channel and the siblings' status sockets
            // are the server's.
            std::vector<int> keep = request_fds;
            keep.push_back(status_write);
            if (parent_pidfd >= 0) keep.push_back(parent_pidfd);
            std::sort(keep.begin(), keep.end());
            unsigned next = 3;
            for (int fd : keep) {
                if (static_cast<unsigned>(fd) > next) ::syscall(SYS_close_range, next, fd - 1, 0);
                next = static_cast<unsigned>(fd) + 1;
            }
            ::syscall(SYS_close_range, next, ~0U, 0);
            run_child_request(body, server_pid, parent_pidfd, status_write, std::move(request_fds));
        }
        std::int32_t answer = pid > 0 ? pid : -errno;
        const UniqueFd child_pidfd(pid > 0 ? open_pidfd(pid) : -1);
        if (pid > 0) {
            status_sockets[pid] = UniqueFd(status_write);
        } else {
            close_fd(status_write);
        }
        close_fd(parent_pidfd);
        close_all(request_fds);
        std::vector<int> answer_fds;
        if (child_pidfd) answer_fds.push_back(child_pidfd.get());
        bool answered = false;
        try {
            answered = send_with_descriptors(channel, &answer, sizeof answer, answer_fds);
        } catch (const std::exception&) {
            answered = false;
        }
        if (!answered) break;
        report_ended_children();
    }
    // Children still running keep running; their parents learn of the lost status from the
    // closed status sockets.
    ::_exit(0);
}

}  // namespace mproc::detail
