#pragma once
// The operations synchronize.hpp's primitives call on their shared blocks (src/sync/): create a
// primitive's block, check one decoded from another process, and the primitive's methods.
#include <cstdint>
#include <string>

#include "mproc/detail/barrier_action.hpp"
#include "mproc/detail/shared_block.hpp"

namespace mproc::detail {

// Lock and RLock (one block kind; `recursive` tells them apart).
SharedBlock mutex_create(bool recursive);
void mutex_check(const SharedBlock& block, bool recursive);  // after decoding
void mutex_lock(const SharedBlock& block);
bool mutex_acquire(const SharedBlock& block, std::int64_t timeout);
void mutex_unlock(const SharedBlock& block);
bool mutex_locked(const SharedBlock& block);
bool mutex_is_recursive(const SharedBlock& block);
std::string mutex_repr(const SharedBlock& block);

SharedBlock semaphore_create(int value, int maxvalue);  // maxvalue 0: unbounded
void semaphore_check(const SharedBlock& block, bool bounded);
bool semaphore_acquire(const SharedBlock& block, std::int64_t timeout);
void semaphore_release(const SharedBlock& block);
int semaphore_value(const SharedBlock& block);
std::string semaphore_repr(const SharedBlock& block);

inline constexpr int kNotifyAll = 0x7fffffff;
SharedBlock condition_create();
bool condition_wait(const SharedBlock& condition, const SharedBlock& lock, std::int64_t timeout);
void condition_notify(const SharedBlock& condition, const SharedBlock& lock, int count);
std::string condition_repr(const SharedBlock& condition, const SharedBlock& lock);

SharedBlock event_create();
bool event_is_set(const SharedBlock& block);
void event_set(const SharedBlock& block);
void event_clear(const SharedBlock& block);
bool event_wait(const SharedBlock& block, std::int64_t timeout);
std::string event_repr(const SharedBlock& block);

SharedBlock barrier_create(int parties, std::int64_t default_timeout);
void barrier_check(const SharedBlock& block);
int barrier_wait(const SharedBlock& block, const BarrierAction& action, std::int64_t timeout, bool use_default);
void barrier_reset(const SharedBlock& block);
void barrier_abort(const SharedBlock& block);
int barrier_parties(const SharedBlock& block);
int barrier_n_waiting(const SharedBlock& block);
bool barrier_broken(const SharedBlock& block);
std::string barrier_repr(const SharedBlock& block);

}  // namespace mproc::detail
