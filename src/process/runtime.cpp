#include "process/runtime.hpp"

#include <cxxabi.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>
#include <typeinfo>
#include <utility>

#include "base/deadline.hpp"
#include "process/launcher.hpp"
#include "mproc/errors.hpp"
#include "mproc/logging.hpp"
#include "process/process_access.hpp"

namespace mproc::detail {

// ---------------------------------------------------------------------------------------------
// ProcessState

int exitcode_from_wait_status(int status) noexcept {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return 255;
}

std::optional<int> ProcessState::poll() {
    std::lock_guard lock(mutex);
    return poll_locked();
}

std::optional<int> ProcessState::poll_locked() {
    if (exitcode || role != ProcessRole::child || pid == 0) return exitcode;
    if (reaped_elsewhere) {
        pollfd p{pidfd.get(), POLLIN, 0};
        if (pidfd && ::poll(&p, 1, 0) == 0) return std::nullopt;  // still running
        return collect_reported_exitcode();
    }
    int status = 0;
    pid_t r;
    do {
        r = ::waitpid(pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid) {
        exitcode = exitcode_from_wait_status(status);
    } else if (r < 0) {
        throw OSError("waitpid for process " + std::to_string(pid) +
                          " (was it reaped elsewhere, or is SIGCHLD ignored?)",
                      errno);
    }
    return exitcode;
}

// A child that ran to its end wrote its exit code before ending; for one that a signal ended, the
// fork server writes it as soon as it has reaped the child, which it does when woken by SIGCHLD.
// A server that has not reported within kServerReportWaitMs is stuck (stopped, say): the child then
// counts as running until the report comes. End of file means no report will come: the server
// died first.
std::optional<int> ProcessState::collect_reported_exitcode() {
    constexpr int kServerReportWaitMs = 1000;
    if (!status_fd) return exitcode = kExitcodeUnknown;
    std::int32_t code = 0;
    ssize_t n = 0;
    for (bool waited = false;; waited = true) {
        do {
            n = ::read(status_fd.get(), &code, sizeof code);
        } while (n < 0 && errno == EINTR);
        if (n >= 0 || errno != EAGAIN || waited) break;
        pollfd p{status_fd.get(), POLLIN, 0};
        while (::poll(&p, 1, kServerReportWaitMs) < 0 && errno == EINTR) {
        }
    }
    if (n == static_cast<ssize_t>(sizeof code)) return exitcode = code;
    if (n < 0) return std::nullopt;
    get_logger().warning("the exit code of process {} was lost: the fork server ended first", pid);
    status_fd.reset();
    return exitcode = kExitcodeUnknown;
}

namespace {

// Waits until `fd` is readable or the deadline passes; retries EINTR with the time left.
// Returns true when readable.
bool wait_readable(int fd, const Deadline& deadline) {
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        timespec ts{};
        timespec* tsp = nullptr;
        if (deadline.finite()) {
            const std::int64_t ns = deadline.remaining_ns();
            ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
            ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
            tsp = &ts;
        }
        int r = ::ppoll(&p, 1, tsp, nullptr);
        if (r > 0) return true;
        if (r == 0) return false;
        if (errno != EINTR) throw OSError("ppoll on a process sentinel", errno);
    }
}

}  // namespace

std::optional<int> ProcessState::wait(std::optional<std::chrono::nanoseconds> timeout) {
    const Deadline deadline = Deadline::from(timeout);
    for (;;) {
        int fd;
        {
            std::lock_guard lock(mutex);
            if (exitcode) return exitcode;
            fd = sentinel_fd();
        }
        if (fd < 0) return poll();
        // Wait without holding the mutex, so that other threads may poll meanwhile; once the
        // sentinel is readable, poll() collects the exit code at once.
        if (!wait_readable(fd, deadline)) return poll();
        if (auto code = poll()) return code;
        // A forkserver child that has ended, whose server is slow to report: wait for the report.
        int report_fd;
        {
            std::lock_guard lock(mutex);
            if (exitcode || !reaped_elsewhere || !status_fd) return exitcode;
            report_fd = status_fd.get();
        }
        if (!wait_readable(report_fd, deadline)) return poll();
    }
}

void ProcessState::send_signal(int signal_number) {
    std::lock_guard lock(mutex);
    if (exitcode || !pidfd) return;  // already reaped: the pid may belong to someone else now
    if (::syscall(SYS_pidfd_send_signal, pidfd.get(), signal_number, nullptr, 0) < 0 && errno != ESRCH)
        throw OSError("pidfd_send_signal to process " + std::to_string(pid), errno);
}

std::string ProcessState::display_name() const {
    if (!name.empty()) return name;
    std::string text = type_name.empty() ? "Process" : type_name;
    char sep = '-';
    for (int n : identity) {
        text += sep;
        text += std::to_string(n);
        sep = ':';
    }
    return text;
}

// ---------------------------------------------------------------------------------------------
// Type names

std::string demangled_name(const std::type_info& type) {
    int status = 0;
    char* text = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
    std::string result = (status == 0 && text != nullptr) ? text : type.name();
    std::free(text);
    return result;
}

std::string exception_type_name(const std::exception_ptr& error, std::string& message) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        message = e.what();
        return demangled_name(typeid(e));
    } catch (...) {
        message.clear();
        const std::type_info* type = abi::__cxa_current_exception_type();
        return type ? demangled_name(*type) : std::string("unknown exception");
    }
}

std::string unqualified_type_name(const std::type_info& type) {
    std::string full = demangled_name(type);
    // Drop template arguments, then every enclosing scope ("ns::", "main()::", "(anonymous
    // namespace)::").
    auto angle = full.find('<');
    if (angle != std::string::npos) full.resize(angle);
    auto scope = full.rfind("::");
    return scope == std::string::npos ? full : full.substr(scope + 2);
}

// ---------------------------------------------------------------------------------------------
// Runtime

namespace {

void exit_handler_of_main() {
    Runtime& rt = Runtime::get();
    // A process created by a raw fork() of the user's inherits this handler; it is not ours.
    if (rt.current_state()->pid != ::getpid()) return;
    try {
        rt.run_exit_sequence();
    } catch (...) {
        // Nothing may escape an atexit handler; the exit sequence logs its own failures.
    }
    std::fflush(nullptr);
}

std::shared_ptr<ProcessState> make_main_state() {
    auto state = std::make_shared<ProcessState>();
    state->role = ProcessRole::main;
    state->name = "MainProcess";
    state->type_name = "_MainProcess";
    state->pid = ::getpid();
    state->started = true;
    return state;
}

thread_local bool is_child_bootstrap_thread = false;

}  // namespace

// Answers the floors below about this process (base/lifecycle.hpp).
[[maybe_unused]] const bool process_hooks_set = (set_process_hooks({.process_name = [] { return Runtime::get().current_process().name(); },
                                                                    .install_exit_sequence = [] { Runtime::get(); },
                                                                    .parent_pid = [] { return Runtime::get().parent_pid(); }}),
                                                 true);

Runtime& Runtime::get() {
    static Runtime* runtime = [] {
        auto* rt = new Runtime();  // never destroyed: see the header
        std::atexit(exit_handler_of_main);
        return rt;
    }();
    return *runtime;
}

Runtime::Runtime() : current_(make_main_state()), current_handle_(ProcessAccess::make(current_)) {
    bootstrapping_ = std::getenv(kSpawnFdVariable) != nullptr || std::getenv(kForkServerFdVariable) != nullptr;
}

void Runtime::set_argv(int argc, char** argv) {
    std::lock_guard lock(mutex_);
    argv_.assign(argv, argv + argc);
    initialized_ = true;
    bootstrapping_ = false;
}

std::vector<char*> Runtime::argv_for_children() {
    std::lock_guard lock(mutex_);
    if (argv_.empty()) argv_.emplace_back("mproc");
    std::vector<char*> result;
    for (auto& a : argv_) result.push_back(a.data());
    result.push_back(nullptr);
    return result;
}

std::vector<int> Runtime::next_identity() {
    std::lock_guard lock(mutex_);
    std::vector<int> identity = current_->identity;
    identity.push_back(++counter_);
    return identity;
}

void Runtime::add_child(std::shared_ptr<ProcessState> child) {
    std::lock_guard lock(mutex_);
    children_.push_back(std::move(child));
}

void Runtime::forget_child(const ProcessState* child) {
    std::lock_guard lock(mutex_);
    std::erase_if(children_, [child](const auto& c) { return c.get() == child; });
}

std::vector<std::shared_ptr<ProcessState>> Runtime::live_children() {
    std::vector<std::shared_ptr<ProcessState>> children;
    {
        std::lock_guard lock(mutex_);
        children = children_;
    }
    std::vector<std::shared_ptr<ProcessState>> live;
    for (auto& child : children) {
        if (child->poll()) {
            forget_child(child.get());
        } else {
            live.push_back(child);
        }
    }
    return live;
}

void Runtime::become_child(std::shared_ptr<ProcessState> self, const ChildOrigin& origin) {
    // Only this thread exists here; fork-aware mutexes are free.
    self->pid = ::getpid();
    self->started = true;
    current_ = self;
    current_handle_ = ProcessAccess::make(std::move(self));
    parent_.reset();
    parent_name_ = origin.parent_name;
    parent_pid_ = origin.parent_pid;
    parent_pidfd_ = origin.parent_pidfd;
    // A child forked from a forkserver child must not report into its parent's status socket, nor
    // hold it open.
    if (exit_status_fd_is_ours() && exit_status_fd_ != origin.exit_status_fd) close_fd(exit_status_fd_);
    exit_status_fd_ = origin.exit_status_fd;
    struct stat file {};
    if (exit_status_fd_ >= 0 && ::fstat(exit_status_fd_, &file) == 0) {
        exit_status_file_ = {file.st_dev, file.st_ino};
    } else {
        exit_status_fd_ = -1;
    }
    reset_launchers_after_fork();
    children_.clear();
    counter_ = 0;
    exiting_ = false;
    forget_exit_tasks();
}

int Runtime::parent_pid() {
    std::lock_guard lock(mutex_);
    return current_->role == ProcessRole::main ? 0 : parent_pid_;
}

std::optional<Process> Runtime::parent_process() {
    std::lock_guard lock(mutex_);
    if (current_->role == ProcessRole::main) return std::nullopt;
    if (!parent_) {
        auto state = std::make_shared<ProcessState>();
        state->role = ProcessRole::parent_view;
        state->name = parent_name_;
        state->type_name = "_ParentProcess";
        state->pid = parent_pid_;
        state->started = true;
        if (parent_pidfd_ >= 0) {
            state->pidfd.reset(std::exchange(parent_pidfd_, -1));  // handed over by the fork server
        } else {
            // A pidfd opened while the parent is still our parent refers to it; if we were
            // reparented meanwhile, the parent has ended and there is nothing to watch.
            state->pidfd.reset(open_pidfd(parent_pid_));
            if (state->pidfd && ::getppid() != parent_pid_) state->pidfd.reset();
        }
        parent_ = std::move(state);
    }
    return ProcessAccess::make(parent_);
}

AuthKey Runtime::authkey() {
    std::lock_guard lock(mutex_);
    if (!current_->authkey) current_->authkey = AuthKey::random(32);
    return *current_->authkey;
}

void Runtime::run_exit_sequence() {
    std::vector<std::function<void()>> before, after;
    {
        std::lock_guard lock(mutex_);
        if (exiting_) return;
        exiting_ = true;
    }
    before = take_exit_tasks(ExitPhase::before_children);
    after = take_exit_tasks(ExitPhase::after_children);
    Logger& log = get_logger();
    auto run_tasks = [&log](std::vector<std::function<void()>>& tasks) {
        for (auto it = tasks.rbegin(); it != tasks.rend(); ++it) {
            try {
                (*it)();
            } catch (const std::exception& e) {
                log.error("exit-time task failed: {}", e.what());
            }
        }
    };

    log.info("process shutting down");
    log.debug("running all \"atexit\" finalizers with priority >= 0");
    run_tasks(before);

    for (auto& child : live_children()) {
        if (child->daemon) {
            log.info("calling terminate() for daemon {}", child->display_name());
            child->send_signal(SIGTERM);
        }
    }
    for (auto& child : live_children()) {
        log.info("calling join() for process {}", child->display_name());
        child->wait(std::nullopt);
        forget_child(child.get());
    }

    log.debug("running the remaining \"atexit\" finalizers");
    run_tasks(after);
}

bool Runtime::exit_status_fd_is_ours() const noexcept {
    struct stat file {};
    return exit_status_fd_ >= 0 && ::fstat(exit_status_fd_, &file) == 0 &&
           std::pair(file.st_dev, file.st_ino) == exit_status_file_;
}

void Runtime::report_exit_status(int code) noexcept {
    if (!exit_status_fd_is_ours()) return;
    const std::int32_t reported = code & 0xff;  // what waitpid would tell: the low 8 bits
    (void)!::send(exit_status_fd_, &reported, sizeof reported, MSG_NOSIGNAL);
}

bool Runtime::in_child_bootstrap_thread() const { return is_child_bootstrap_thread; }
void Runtime::mark_child_bootstrap_thread() { is_child_bootstrap_thread = true; }

// ---------------------------------------------------------------------------------------------
// The child's life

namespace {

bool child_finishing = false;

void flush_std_streams() noexcept {
    try {
        std::cout.flush();
        std::cerr.flush();
        std::clog.flush();
    } catch (...) {
    }
    std::fflush(nullptr);
}

void report_uncaught(const std::string& process_name, const std::exception_ptr& failure) {
    std::string text = "Process " + process_name + ":\n";
    try {
        std::rethrow_exception(failure);
    } catch (const std::exception& e) {
        text += demangled_name(typeid(e)) + ": " + e.what() + "\n";
    } catch (...) {
        const std::type_info* type = abi::__cxa_current_exception_type();
        text += (type ? demangled_name(*type) : std::string("unknown exception")) + "\n";
    }
    std::fflush(stderr);
    std::fwrite(text.data(), 1, text.size(), stderr);
}

[[noreturn]] void finish_child(int code, const std::exception_ptr& failure) {
    child_finishing = true;
    Runtime& rt = Runtime::get();
    try {
        rt.run_exit_sequence();
    } catch (const std::exception& e) {
        get_logger().error("exit sequence failed: {}", e.what());
    } catch (...) {
    }
    if (failure) report_uncaught(rt.current_process().name(), failure);
    get_logger().info("process exiting with exitcode {}", code);
    flush_std_streams();
    rt.report_exit_status(code);  // final here: the parent reads it once this process has ended
    ::_exit(code);
}

// std::exit() in a child lands here first (it was registered last): finish as the child,
// never running the parent's atexit handlers and static destructors.
void child_exit_hook(int status, void*) {
    if (child_finishing || Runtime::get().current_state()->pid != ::getpid()) return;
    finish_child(status, nullptr);
}

void redirect_stdin_to_devnull() {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    if (fd != STDIN_FILENO) {
        ::dup2(fd, STDIN_FILENO);
        close_fd(fd);
    }
    std::clearerr(stdin);
}

}  // namespace

void child_bootstrap(Process& self, const std::shared_ptr<ProcessState>& state, const ChildOrigin& origin) {
    if (state->die_with_parent) {
        // Set, then check that the creator is still there: had it died before the prctl, no
        // signal would ever come.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != origin.os_parent_pid) ::_exit(128 + SIGKILL);
    }
    Runtime& rt = Runtime::get();
    rt.become_child(state, origin);
    rt.mark_child_bootstrap_thread();
    child_finishing = false;
    redirect_stdin_to_devnull();
    ::on_exit(child_exit_hook, nullptr);

    int code = 0;
    std::exception_ptr failure;
    try {
        get_logger().info("child process calling self.run()");
        self.run();
    } catch (const SystemExit& request) {
        code = request.code();
        if (request.reason()) write_exit_reason(*request.reason());
    } catch (...) {
        failure = std::current_exception();
        code = 1;
    }
    finish_child(code, failure);
}

}  // namespace mproc::detail
