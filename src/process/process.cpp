#include "mproc/process.hpp"

#include <poll.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <ostream>

#include "process/channel.hpp"
#include "process/child_request.hpp"
#include "process/launcher.hpp"
#include "mproc/context.hpp"
#include "mproc/detail/timeout.hpp"
#include "process/process_access.hpp"
#include "process/runtime.hpp"

namespace mproc {

using detail::ProcessRole;
using detail::Runtime;

namespace {

// Python's repr() of a str: single quotes unless the text has one and no double quote.
std::string python_repr(const std::string& text) {
    char quote = (text.find('\'') != std::string::npos && text.find('"') == std::string::npos) ? '"' : '\'';
    std::string out(1, quote);
    for (unsigned char c : text) {
        if (c == '\\' || c == static_cast<unsigned char>(quote)) {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    out += quote;
    return out;
}

// "-SIGTERM" for -15, as Python's _exitcode_to_name; the number when the signal has no name.
std::string exitcode_text(int code) {
    if (code < 0) {
        if (const char* abbrev = ::sigabbrev_np(-code)) return std::string("-SIG") + abbrev;
    }
    return std::to_string(code);
}

bool sentinel_ready(int fd) {
    if (fd < 0) return true;
    pollfd p{fd, POLLIN, 0};
    int r;
    do {
        r = ::poll(&p, 1, 0);
    } while (r < 0 && errno == EINTR);
    return r > 0;
}

void flush_std_streams() {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
    std::fflush(nullptr);
}

}  // namespace

Process::Process() : Process(ProcessOptions{}) {}

Process::Process(ProcessOptions options) : state_(std::make_shared<detail::ProcessState>()) {
    Runtime& rt = Runtime::get();
    state_->identity = rt.next_identity();
    state_->name = std::move(options.name);
    state_->daemon = options.daemon.value_or(rt.current_state()->daemon);
    state_->parent_pid = ::getpid();
    state_->method = options.start_method;
    state_->die_with_parent_option = options.die_with_parent;
}

Process::Process(std::shared_ptr<detail::ProcessState> state) noexcept : state_(std::move(state)) {}

Process::~Process() = default;

void Process::set_target(std::shared_ptr<detail::Target> target) { state_->target = std::move(target); }

void Process::run() {
    if (state_->target) state_->target->invoke();
}

namespace {
void check_open(const detail::ProcessState& state) {
    if (state.closed) throw UsageError("process object is closed");
}
}  // namespace

void Process::start() {
    check_open(*state_);
    if (state_->started) throw UsageError("cannot start a process twice");
    if (state_->parent_pid != ::getpid())
        throw UsageError("can only start a process object created by current process");
    Runtime& rt = Runtime::get();
    if (rt.current_state()->daemon) throw UsageError("daemonic processes are not allowed to have children");
    if (rt.bootstrapping())
        throw UsageError(
            "An attempt has been made to start a new process before the current process has finished its "
            "bootstrapping phase: this program was started by mproc's spawn or forkserver start method, and "
            "mproc::init(argc, argv) must be the first statement of main");
    rt.live_children();  // reap children that ended unjoined, as Python's _cleanup()

    const StartMethod method = state_->method ? *state_->method : detail::default_start_method();
    state_->method = method;
    state_->die_with_parent = state_->die_with_parent_option.value_or(state_->daemon);
    state_->type_name = type_name();
    if (state_->name.empty()) state_->name = state_->display_name();
    if (!state_->authkey) state_->authkey = rt.authkey();
    const std::string parent_name = rt.current_process().name();
    const int parent_pid = ::getpid();

    detail::LaunchRequest request;
    if (method == StartMethod::fork) {
        request.fork_child_main = [&] {
            detail::ChildOrigin origin{parent_name, parent_pid, parent_pid, -1};
            detail::child_bootstrap(*this, state_, origin);
        };
    } else {
        if (!rt.initialized())
            throw UsageError(std::string("the ") + std::string(to_string(method)) +
                             " start method executes this program anew: call mproc::init(argc, argv) first in main");
        // Everything that must travel is encoded before any process exists: what cannot travel
        // is an error here, not in the child.
        request.encoded_child = detail::encode_child_request(*this, *state_, parent_name, request.descriptors);
    }

    // Whatever the parent has buffered would otherwise be written again by a forked child.
    flush_std_streams();
    detail::LaunchedChild child = detail::launcher_for(method).launch(request);
    // The child has its own copy of the target and its arguments now (Python's start() drops
    // _target, _args and _kwargs): a Connection, SharedMemory or Queue moved into this Process
    // is closed in the parent here, so that the child's end of file reaches the other end.
    state_->target.reset();
    {
        std::lock_guard lock(state_->mutex);
        state_->pid = child.pid;
        state_->reaped_elsewhere = static_cast<bool>(child.status_fd);
        state_->pidfd = std::move(child.pidfd);
        state_->status_fd = std::move(child.status_fd);
        state_->started = true;
    }
    rt.add_child(state_);
}

StartMethod Process::start_method() const { return state_->method ? *state_->method : detail::default_start_method(); }

void Process::join() { join_for(std::chrono::nanoseconds::max()); }

void Process::join_for(std::chrono::nanoseconds timeout) {
    check_open(*state_);
    // The one conversion (detail/timeout.hpp): negative is zero, nanoseconds::max() (join()) is forever.
    const detail::Timeout limit = detail::to_timeout(timeout);
    if (state_->role == ProcessRole::parent_view) {
        state_->wait(limit);
        return;
    }
    if (state_->parent_pid != ::getpid()) throw UsageError("can only join a child process");
    if (!state_->started) throw UsageError("can only join a started process");
    if (state_->wait(limit)) Runtime::get().forget_child(state_.get());
}

bool Process::is_alive() const {
    check_open(*state_);
    Runtime& rt = Runtime::get();
    if (state_ == rt.current_state()) return true;
    if (state_->role == ProcessRole::parent_view) return !sentinel_ready(state_->pidfd.get());
    if (state_->parent_pid != ::getpid()) throw UsageError("can only test a child process");
    if (!state_->started) return false;
    if (state_->poll()) {
        rt.forget_child(state_.get());
        return false;
    }
    return true;
}

namespace {
void signal_process(detail::ProcessState& state, int signal_number) {
    check_open(state);
    if (state.role != ProcessRole::child || !state.started)
        throw UsageError("can only send a signal to a started child process");
    state.send_signal(signal_number);
}
}  // namespace

void Process::terminate() { signal_process(*state_, SIGTERM); }
void Process::kill() { signal_process(*state_, SIGKILL); }
void Process::interrupt() { signal_process(*state_, SIGINT); }

void Process::close() {
    if (state_->closed) return;
    if (state_->role == ProcessRole::child && state_->started) {
        if (state_->parent_pid == ::getpid() && !state_->poll())
            throw UsageError(
                "Cannot close a process while it is still running. You should first call join() or terminate().");
    }
    {
        std::lock_guard lock(state_->mutex);
        state_->pidfd.reset();
        state_->closed = true;
    }
    Runtime::get().forget_child(state_.get());
}

std::string Process::name() const {
    if (!state_->name.empty()) return state_->name;
    if (state_->type_name.empty()) {
        detail::ProcessState draft;
        draft.identity = state_->identity;
        draft.type_name = type_name();
        return draft.display_name();
    }
    return state_->display_name();
}

void Process::set_name(std::string name) { state_->name = std::move(name); }

bool Process::daemon() const { return state_->daemon; }

void Process::set_daemon(bool daemonic) {
    if (state_->started && state_->role == ProcessRole::child && state_ != Runtime::get().current_state())
        throw UsageError("process has already started");
    state_->daemon = daemonic;
}

std::optional<int> Process::pid() const {
    check_open(*state_);
    if (state_ == Runtime::get().current_state()) return ::getpid();
    if (!state_->started) return std::nullopt;
    return state_->pid;
}

std::optional<int> Process::exitcode() const {
    check_open(*state_);
    if (state_->role != ProcessRole::child || !state_->started) return std::nullopt;
    if (state_->parent_pid == ::getpid()) return state_->poll();
    return state_->exitcode;
}

int Process::sentinel() const {
    check_open(*state_);
    if (!state_->started || state_->sentinel_fd() < 0) throw UsageError("process not started");
    return state_->sentinel_fd();
}

AuthKey Process::authkey() const {
    if (state_->authkey) return *state_->authkey;
    return Runtime::get().authkey();
}

void Process::set_authkey(AuthKey key) { state_->authkey = std::move(key); }

std::string Process::type_name() const {
    if (state_->role == ProcessRole::main) return "_MainProcess";
    if (state_->role == ProcessRole::parent_view) return "_ParentProcess";
    const std::string dynamic = detail::unqualified_type_name(typeid(*this));
    // A plain Process handle of a started subclass object keeps the subclass's name.
    if (dynamic == "Process" && !state_->type_name.empty()) return state_->type_name;
    return dynamic;
}

std::string Process::repr() const {
    Runtime& rt = Runtime::get();
    const bool is_current = state_ == rt.current_state();
    std::optional<int> code;
    std::string status;
    if (is_current) {
        status = "started";
    } else if (state_->closed) {
        status = "closed";
    } else if (state_->parent_pid != ::getpid()) {
        status = "unknown";
    } else if (!state_->started) {
        status = "initial";
    } else {
        code = state_->poll();
        status = code ? "stopped" : "started";
    }
    std::string text = "<" + type_name() + " name=" + python_repr(name());
    if (!is_current && state_->started && state_->role == ProcessRole::child)
        text += " pid=" + std::to_string(state_->pid);
    text += " parent=" + (state_->parent_pid != 0 ? std::to_string(state_->parent_pid) : std::string("None"));
    text += " " + status;
    if (code) text += " exitcode=" + exitcode_text(*code);
    if (state_->daemon) text += " daemon";
    return text + ">";
}

std::ostream& operator<<(std::ostream& os, const Process& p) { return os << p.repr(); }

Process& current_process() { return Runtime::get().current_process(); }

std::optional<Process> parent_process() { return Runtime::get().parent_process(); }

std::vector<Process> active_children() {
    std::vector<Process> result;
    for (auto& state : Runtime::get().live_children()) result.push_back(detail::ProcessAccess::make(state));
    return result;
}

void exit(int code) {
    if (Runtime::get().in_child_bootstrap_thread()) throw SystemExit(code);
    std::exit(code);
}

namespace detail {
void exit_with_reason(std::string reason) {
    if (Runtime::get().in_child_bootstrap_thread()) throw SystemExit(std::move(reason));
    write_exit_reason(reason);
    std::exit(1);
}

void write_exit_reason(const std::string& reason) {
    flush_std_streams();
    std::fprintf(stderr, "%s\n", reason.c_str());
    std::fflush(stderr);
}
}  // namespace detail

void init(int argc, char** argv) {
    Runtime& rt = Runtime::get();
    rt.set_argv(argc, argv);
    if (const char* fd = std::getenv(detail::kSpawnFdVariable)) {
        const int channel = std::atoi(fd);
        ::unsetenv(detail::kSpawnFdVariable);
        std::vector<std::byte> request;
        std::vector<int> descriptors;
        try {
            request = detail::receive_to_end(channel, descriptors);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "mproc: a spawned child could not read its start request: %s\n", e.what());
            ::_exit(1);
        }
        detail::close_fd(channel);  // inherited by number (kChannelFd): the request is read
        // The creator is the parent itself; not getppid(), which is someone else if the parent
        // already died.
        detail::run_child_request(request, detail::kCreatorIsParent, -1, -1, std::move(descriptors));
    }
    if (const char* fd = std::getenv(detail::kForkServerFdVariable)) {
        const int channel = std::atoi(fd);
        ::unsetenv(detail::kForkServerFdVariable);
        if (std::getenv(detail::kForkServerBindNowVariable) != nullptr) {
            ::unsetenv(detail::kForkServerBindNowVariable);
            ::unsetenv("LD_BIND_NOW");  // it has done its work: the server's symbols are resolved
        }
        detail::run_forkserver(channel);
    }
}

}  // namespace mproc
