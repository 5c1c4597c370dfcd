// machine_oversubscribed() (base/spin.hpp): the kernel's count of runnable tasks against the CPUs.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "base/spin.hpp"

namespace mproc::detail {
namespace {

std::int64_t coarse_now_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The fourth field of /proc/loadavg, "running/total": tasks runnable right now, the reader
// included; -1 when it cannot be read (then spinning goes on as if the machine were idle).
// Opened for each sample (every 10 ms at most): a descriptor kept open would be one more in every
// process, where tests count them.
long runnable_tasks() noexcept {
    const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char text[128];
    const ssize_t n = ::read(fd, text, sizeof text - 1);
    ::close(fd);
    if (n <= 0) return -1;
    text[n] = '\0';
    const char* p = text;
    for (int field = 0; field < 3; ++field) {
        while (*p != '\0' && *p != ' ') ++p;
        while (*p == ' ') ++p;
    }
    char* end = nullptr;
    const long running = std::strtol(p, &end, 10);
    return end != p && *end == '/' ? running : -1;
}

std::atomic<std::int64_t> next_sample_ns{0};
std::atomic<bool> oversubscribed{false};

}  // namespace

bool machine_oversubscribed() noexcept {
    const std::int64_t now = coarse_now_ns();
    std::int64_t due = next_sample_ns.load(std::memory_order_relaxed);
    // One thread samples; the others read the last answer.
    if (now >= due && next_sample_ns.compare_exchange_strong(due, now + kLoadSampleNanos, std::memory_order_relaxed)) {
        static const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
        const long running = runnable_tasks();
        oversubscribed.store(running > cpus, std::memory_order_relaxed);
    }
    return oversubscribed.load(std::memory_order_relaxed);
}

void note_contended_yield() noexcept {
    oversubscribed.store(true, std::memory_order_relaxed);
    next_sample_ns.store(coarse_now_ns() + kLoadSampleNanos, std::memory_order_relaxed);
}

}  // namespace mproc::detail
