#pragma once
// Futex waits and wakes on 32-bit words in shared memory, with deadlines on the monotonic clock
// (base/deadline.hpp).
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

#include "base/deadline.hpp"

namespace mproc::detail {

static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

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
