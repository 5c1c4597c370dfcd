#pragma once
// The one conversion from a caller's duration to the timeout every mproc call takes, and its two
// forms: std::optional<nanoseconds> (nullopt: wait forever) inside a process, and a signed count
// of nanoseconds (kForever: wait forever) where a timeout crosses a process boundary or a C-style
// interface.
//
// The rounding rule, the same for every call: a timeout never fires early. A duration is rounded
// up to the next nanosecond; zero or negative (and NaN) is zero, which means "do not block", as in
// Python's acquire(timeout=-1.0) on a non-blocking path; a duration too long for a signed 64-bit
// count of nanoseconds (about 292 years, hours::max()) waits forever instead of overflowing.
#include <chrono>
#include <cstdint>
#include <optional>

namespace mproc::detail {

using Timeout = std::optional<std::chrono::nanoseconds>;

inline constexpr std::int64_t kForever = -1;

template <class Rep, class Period>
constexpr Timeout to_timeout(std::chrono::duration<Rep, Period> timeout) {
    const double ns = std::chrono::duration<double, std::nano>(timeout).count();
    if (!(ns > 0)) return std::chrono::nanoseconds::zero();  // also NaN
    if (ns >= 9.2e18) return std::nullopt;
    const auto whole = static_cast<std::int64_t>(ns);
    return std::chrono::nanoseconds(whole < ns ? whole + 1 : whole);
}

constexpr std::int64_t timeout_to_ns(Timeout timeout) noexcept { return timeout ? timeout->count() : kForever; }
constexpr Timeout timeout_from_ns(std::int64_t ns) noexcept {
    if (ns < 0) return std::nullopt;
    return std::chrono::nanoseconds(ns);
}

template <class Rep, class Period>
constexpr std::int64_t timeout_ns(std::chrono::duration<Rep, Period> timeout) {
    return timeout_to_ns(to_timeout(timeout));
}

template <class Clock, class Duration>
std::int64_t timeout_until(const std::chrono::time_point<Clock, Duration>& when) {
    return timeout_ns(when - Clock::now());
}

}  // namespace mproc::detail
