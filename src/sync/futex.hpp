#pragma once
// Futex waits and wakes on 32-bit words in shared memory, with deadlines on the monotonic clock.
//
// The words are std::atomic<std::uint32_t> placed in MAP_SHARED memory: lock-free atomics are
// address-free, and the kernel keys a shared futex by (file, offset), so processes that map the
// same segment at different addresses wait on the same word. Never FUTEX_PRIVATE_FLAG here.
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>

namespace mproc::detail {

static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

// A point on CLOCK_MONOTONIC (std::chrono::steady_clock on Linux), or none (wait forever).
class Deadline {
public:
    static Deadline never() noexcept { return Deadline(); }
    // `timeout` from now; a negative timeout is zero (Python's acquire treats it so).
    static Deadline after(std::chrono::nanoseconds timeout) noexcept {
        Deadline d;
        d.finite_ = true;
        if (timeout < std::chrono::nanoseconds::zero()) timeout = std::chrono::nanoseconds::zero();
        timespec now{};
        ::clock_gettime(CLOCK_MONOTONIC, &now);
        const std::int64_t ns = timeout.count();
        std::int64_t sec = now.tv_sec + ns / 1'000'000'000;
        std::int64_t nsec = now.tv_nsec + ns % 1'000'000'000;
        if (nsec >= 1'000'000'000) {
            ++sec;
            nsec -= 1'000'000'000;
        }
        d.at_.tv_sec = static_cast<time_t>(sec);
        d.at_.tv_nsec = static_cast<long>(nsec);
        return d;
    }
    static Deadline from(std::optional<std::chrono::nanoseconds> timeout) noexcept {
        return timeout ? after(*timeout) : never();
    }

    bool finite() const noexcept { return finite_; }
    const timespec* when() const noexcept { return finite_ ? &at_ : nullptr; }
    // Nanoseconds from now until the deadline, 0 once it passed; -1 (forever) for never().
    std::int64_t remaining_ns() const noexcept {
        if (!finite_) return -1;
        timespec now{};
        ::clock_gettime(CLOCK_MONOTONIC, &now);
        const std::int64_t ns = (static_cast<std::int64_t>(at_.tv_sec) - now.tv_sec) * 1'000'000'000 + (at_.tv_nsec - now.tv_nsec);
        return ns > 0 ? ns : 0;
    }
    bool passed() const noexcept {
        if (!finite_) return false;
        timespec now{};
        ::clock_gettime(CLOCK_MONOTONIC, &now);
        return now.tv_sec > at_.tv_sec || (now.tv_sec == at_.tv_sec && now.tv_nsec >= at_.tv_nsec);
    }
    // The earlier of this deadline and `slice` from now: for waits that wake up now and then to
    // look around (a dead participant, say).
    Deadline capped(std::chrono::nanoseconds slice) const noexcept {
        Deadline s = after(slice);
        if (!finite_) return s;
        const bool s_earlier = s.at_.tv_sec < at_.tv_sec || (s.at_.tv_sec == at_.tv_sec && s.at_.tv_nsec < at_.tv_nsec);
        return s_earlier ? s : *this;
    }

private:
    bool finite_ = false;
    timespec at_{};
};

// Sleeps while *word == expected, until woken or the deadline. Returns 0 when woken (perhaps
// spuriously), EAGAIN when the word did not hold `expected`, ETIMEDOUT, or EINTR; callers
// re-check their condition in every case, which is what makes EINTR harmless.
inline int futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, const Deadline& deadline) noexcept {
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, so retrying after a signal keeps
    // the original deadline.
    long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_BITSET, expected,
                       deadline.when(), nullptr, FUTEX_BITSET_MATCH_ANY);
    return r == 0 ? 0 : errno;
}

// Wakes at most `count` waiters of `word`; returns how many were woken.
inline int futex_wake(std::atomic<std::uint32_t>* word, int count) noexcept {
    long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
    return r < 0 ? 0 : static_cast<int>(r);
}

inline constexpr int kWakeAll = INT_MAX;

}  // namespace mproc::detail
