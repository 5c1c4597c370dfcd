// Event: one futex word holding the flag, a "someone sleeps" bit and a count of set() calls.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <new>
#include <string>

#include "mproc/synchronize.hpp"
#include "base/futex.hpp"

namespace mproc::detail {
namespace {

// Bit 0: the flag. Bit 1: a waiter may be asleep (set() must wake). Bits 2-31: how many times the
// flag went from unset to set, so that a waiter woken by a set() that a clear() undid before it
// looked still returns (with false), as Python's does.
constexpr std::uint32_t kSet = 1;
constexpr std::uint32_t kSleepers = 2;
constexpr std::uint32_t kGeneration = 4;

struct EventState {
    std::atomic<std::uint32_t> word;
};

std::atomic<std::uint32_t>& word_of(const SharedBlock& block) {
    if (!block) [[unlikely]]
        throw_moved_from("this Event");
    return block.as<EventState>()->word;
}

}  // namespace

SharedBlock event_create() {
    SharedBlock block = allocate_shared_block(BlockKind::event, sizeof(EventState), alignof(EventState));
    new (block.payload()) EventState{};
    return block;
}

bool event_is_set(const SharedBlock& block) { return (word_of(block).load(std::memory_order_acquire) & kSet) != 0; }

void event_set(const SharedBlock& block) {
    auto& word = word_of(block);
    std::uint32_t v = word.load(std::memory_order_relaxed);
    std::uint32_t next;
    do {
        if (v & kSet) return;
        next = ((v & ~(kSet | kSleepers)) + kGeneration) | kSet;
    } while (!word.compare_exchange_weak(v, next, std::memory_order_release, std::memory_order_relaxed));
    // Waking never waits for the sleepers; a sleeper that died is simply not there to wake.
    if (v & kSleepers) futex_wake(&word, kWakeAll);
}

void event_clear(const SharedBlock& block) {
    auto& word = word_of(block);
    // One locked instruction, no retry when a waiter raises kSleepers meanwhile; no write at all
    // when the flag is already clear.
    if (word.load(std::memory_order_relaxed) & kSet) word.fetch_and(~kSet, std::memory_order_relaxed);
}

bool event_wait(const SharedBlock& block, std::int64_t timeout) {
    auto& word = word_of(block);
    std::uint32_t v = word.load(std::memory_order_acquire);
    if (v & kSet) return true;
    if (timeout == 0) return false;
    const std::uint32_t generation = v >> 2;
    const Deadline deadline = Deadline::from_ns(timeout);
    for (;;) {
        if (!(v & kSleepers)) {
            if (!word.compare_exchange_weak(v, v | kSleepers, std::memory_order_acquire)) {
                if (v & kSet) return true;
                if ((v >> 2) != generation) return false;
                continue;
            }
            v |= kSleepers;
        }
        const int rc = futex_wait(&word, v, deadline);
        v = word.load(std::memory_order_acquire);
        if (v & kSet) return true;
        if ((v >> 2) != generation) return false;  // set, then cleared before this waiter looked
        if (rc == ETIMEDOUT) return false;
    }
}

std::string event_repr(const SharedBlock& block) {
    char address[32];
    std::snprintf(address, sizeof address, "%#lx", reinterpret_cast<unsigned long>(block.payload()));
    return std::string("<Event at ") + address + (event_is_set(block) ? " set>" : " unset>");
}

}  // namespace mproc::detail
