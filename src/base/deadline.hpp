#pragma once
// The one deadline type: a point on CLOCK_MONOTONIC (std::chrono::steady_clock on Linux), or none.
// Every wait in mproc with a timeout turns it into a Deadline once (detail/timeout.hpp has the
// rounding rule: never early), then waits on it across retries, interruptions and wake-ups, so
// that an EINTR or a spurious wake-up never restarts the full timeout.
#include <time.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>

#include "mproc/detail/timeout.hpp"

namespace mproc::detail {

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
    static Deadline from(Timeout timeout) noexcept { return timeout ? after(*timeout) : never(); }
    // A timeout in mproc's integer form (detail/timeout.hpp): kForever or nanoseconds.
    static Deadline from_ns(std::int64_t timeout_ns) noexcept {
        return timeout_ns < 0 ? never() : after(std::chrono::nanoseconds(timeout_ns));
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
    // The time that remains as a Timeout: nullopt for never(), zero once passed.
    Timeout remaining() const noexcept {
        if (!finite_) return std::nullopt;
        return std::chrono::nanoseconds(remaining_ns());
    }
    // poll(2)'s timeout in milliseconds, rounded up so that the wait never ends early; -1 for never().
    int poll_timeout_ms() const noexcept {
        if (!finite_) return -1;
        const std::int64_t ms = (remaining_ns() + 999'999) / 1'000'000;
        return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
    }
    // The deadline on std::chrono::steady_clock, which reads CLOCK_MONOTONIC too (libstdc++ on
    // Linux), for std::condition_variable::wait_until; time_point::max() for never() and for a
    // point beyond what the clock's count can hold.
    std::chrono::steady_clock::time_point steady_time() const noexcept {
        using Clock = std::chrono::steady_clock;
        constexpr std::int64_t kMaxSeconds = INT64_MAX / 1'000'000'000 - 1;
        if (!finite_ || at_.tv_sec > kMaxSeconds) return Clock::time_point::max();
        const std::int64_t ns = static_cast<std::int64_t>(at_.tv_sec) * 1'000'000'000 + at_.tv_nsec;
        return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
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

}  // namespace mproc::detail
