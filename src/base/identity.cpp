#include "base/identity.hpp"

#include "base/lifecycle.hpp"
#include "base/unique_fd.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace mproc::detail {

thread_local pid_t cached_thread_id = 0;

namespace {

std::atomic<std::uint64_t> cached_self_start_time{0};
std::atomic<pid_t> cached_self_pid{0};

void after_fork_in_child() {
    cached_thread_id = 0;
    cached_self_pid.store(0, std::memory_order_relaxed);
    cached_self_start_time.store(0, std::memory_order_relaxed);
}

void register_fork_handler() {
    static std::once_flag once;
    std::call_once(once, [] { register_fork_hooks(Floor::base, {.child = after_fork_in_child}); });
}

// Registered at start-up too, so that a child forked before any primitive was used still resets
// the thread-id cache of a thread that had filled it.
[[maybe_unused]] const bool registered_at_startup = (register_fork_handler(), true);

// Reads /proc/<pid>/stat into `buffer`; returns the length, or -1.
int read_stat(pid_t pid, char* buffer, std::size_t size) noexcept {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    int fd;
    do {
        fd = ::open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return -1;
    ssize_t total = 0;
    for (;;) {
        ssize_t n = ::read(fd, buffer + total, size - 1 - static_cast<std::size_t>(total));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        total += n;
        if (static_cast<std::size_t>(total) >= size - 1) break;
    }
    close_fd(fd);
    buffer[total] = '\0';
    return static_cast<int>(total);
}

}  // namespace

pid_t fetch_thread_id() noexcept {
    register_fork_handler();
    cached_thread_id = static_cast<pid_t>(::syscall(SYS_gettid));
    return cached_thread_id;
}

std::uint64_t process_start_time(pid_t pid) noexcept {
    char stat[1024];
    if (pid <= 0 || read_stat(pid, stat, sizeof stat) <= 0) return 0;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted
    // from the last ')'. The state is field 3; the start time is field 22.
    const char* p = std::strrchr(stat, ')');
    if (p == nullptr || p[1] != ' ') return 0;
    p += 2;
    const char state = *p;
    if (state == 'Z' || state == 'X' || state == 'x') return 0;
    for (int field = 3; field < 22; ++field) {
        p = std::strchr(p, ' ');
        if (p == nullptr) return 0;
        ++p;
    }
    char* end = nullptr;
    const unsigned long long start = std::strtoull(p, &end, 10);
    if (end == p) return 0;
    return start + 1;  // never 0, which means "gone"
}

ProcessIdentity self_identity() noexcept {
    register_fork_handler();
    ProcessIdentity self;
    self.pid = cached_self_pid.load(std::memory_order_relaxed);
    self.start_time = cached_self_start_time.load(std::memory_order_relaxed);
    if (self.pid == 0 || self.start_time == 0) {
        self.pid = static_cast<std::int32_t>(::getpid());
        self.start_time = process_start_time(self.pid);
        cached_self_start_time.store(self.start_time, std::memory_order_relaxed);
        cached_self_pid.store(self.pid, std::memory_order_relaxed);
    }
    return self;
}

ProcessIdentity fresh_self_identity() noexcept {
    cached_self_pid.store(0, std::memory_order_relaxed);
    return self_identity();
}

bool process_alive(const ProcessIdentity& identity) noexcept {
    if (identity.pid <= 0) return false;
    const std::uint64_t start = process_start_time(identity.pid);
    return start != 0 && start == identity.start_time;
}

bool is_thread_of_this_process(pid_t tid) noexcept {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d", static_cast<int>(tid));
    return ::access(path, F_OK) == 0;
}

}  // namespace mproc::detail
