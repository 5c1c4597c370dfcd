#include "helpers/test_helpers.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace mproc::testing {

int count_entries(const char* directory) {
    int n = 0;
    DIR* dir = ::opendir(directory);
    if (dir == nullptr) throw std::runtime_error(std::string("cannot open ") + directory);
    while (dirent* e = ::readdir(dir)) {
        if (e->d_name[0] != '.') ++n;
    }
    ::closedir(dir);
    return n;
}

int count_open_fds() {
    return count_entries("/proc/self/fd") - 1;  // the directory stream's own descriptor
}

namespace {
char process_state(int pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string content;
    if (!std::getline(stat, content)) return '\0';
    auto close_paren = content.rfind(')');
    if (close_paren == std::string::npos || close_paren + 2 >= content.size()) return '\0';
    return content[close_paren + 2];
}
}  // namespace

std::vector<int> zombie_children() {
    std::vector<int> zombies;
    const int self = ::getpid();
    DIR* dir = ::opendir("/proc");
    if (dir == nullptr) return zombies;
    while (dirent* e = ::readdir(dir)) {
        int pid = std::atoi(e->d_name);
        if (pid <= 0) continue;
        std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
        std::string content;
        if (!std::getline(stat, content)) continue;
        auto close_paren = content.rfind(')');
        if (close_paren == std::string::npos) continue;
        std::istringstream rest(content.substr(close_paren + 2));
        char state = 0;
        int ppid = 0;
        rest >> state >> ppid;
        if (ppid == self && state == 'Z') zombies.push_back(pid);
    }
    ::closedir(dir);
    return zombies;
}

bool process_gone(int pid) {
    if (::kill(pid, 0) < 0 && errno == ESRCH) return true;
    char state = process_state(pid);
    return state == '\0' || state == 'Z' || state == 'X';
}

CapturedStderr::CapturedStderr() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) throw std::runtime_error("pipe2 failed");
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[1]);
    read_end_ = fds[0];
    ::fcntl(read_end_, F_SETFL, O_NONBLOCK);
}

CapturedStderr::~CapturedStderr() {
    text();
    if (read_end_ >= 0) ::close(read_end_);
}

std::string CapturedStderr::text() {
    if (!restored_) {
        std::fflush(stderr);
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        restored_ = true;
        char buf[4096];
        for (;;) {
            ssize_t n = ::read(read_end_, buf, sizeof buf);
            if (n > 0) {
                collected_.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            break;  // EOF or EAGAIN: whatever exited children wrote is in
        }
    }
    return collected_;
}

std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
}

std::vector<std::string> ProgramResult::out_lines() const { return split_lines(out); }
std::vector<std::string> ProgramResult::err_lines() const { return split_lines(err); }

const char* scenario_program() { return MPROC_SCENARIO_PROGRAM; }

ProgramResult run_scenario(const std::vector<std::string>& args, const std::vector<std::string>& environment,
                           std::chrono::seconds timeout) {
    std::vector<std::string> argv{MPROC_SCENARIO_PROGRAM};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_program(argv, environment, timeout);
}

ProgramResult run_program(const std::vector<std::string>& args, const std::vector<std::string>& environment,
                          std::chrono::seconds timeout) {
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) < 0 || ::pipe2(err_pipe, O_CLOEXEC) < 0)
        throw std::runtime_error("pipe2 failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);

    std::vector<std::string> argv_storage = args;
    std::vector<char*> argv;
    for (auto& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);

    std::vector<std::string> env_storage;
    for (char** e = environ; e && *e; ++e) env_storage.emplace_back(*e);
    for (const auto& extra : environment) {
        const std::string name = extra.substr(0, extra.find('=') + 1);
        std::erase_if(env_storage, [&name](const std::string& e) { return e.rfind(name, 0) == 0; });
        env_storage.push_back(extra);
    }
    std::vector<char*> envp;
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);

    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    if (rc != 0) throw std::runtime_error(std::string("posix_spawn failed: ") + std::strerror(rc));

    ProgramResult result;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open_count = 2;
    bool killed = false;
    while (open_count > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 && !killed) {
            ::kill(pid, SIGKILL);
            killed = true;
        }
        int r = ::poll(fds, 2, killed ? 1000 : static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 && killed) break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open_count;
            }
        }
    }
    for (auto& f : fds)
        if (f.fd >= 0) ::close(f.fd);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    if (killed) result.err += "\n[scenario program killed after the timeout]\n";
    return result;
}

}  // namespace mproc::testing
