#pragma once
// A mutex that a fork() from another thread never leaves locked in the child (Python's
// util.ForkAwareThreadLock). Before fork, the forking thread takes every such mutex, in the order
// they were created; after fork, the parent and the child release them. So the child finds each
// one free, and the data it guards in a consistent state.
//
// For objects that live as long as the process (the runtime's registries). Code must not hold one
// of these while waiting for another created earlier, or the fork handler could deadlock with it.
#include <mutex>

namespace mproc::detail {

class ForkAwareMutex {
public:
    ForkAwareMutex();
    ForkAwareMutex(const ForkAwareMutex&) = delete;
    ForkAwareMutex& operator=(const ForkAwareMutex&) = delete;
    ~ForkAwareMutex();

    void lock() { mutex_.lock(); }
    void unlock() { mutex_.unlock(); }
    bool try_lock() { return mutex_.try_lock(); }

private:
    std::mutex mutex_;
};

}  // namespace mproc::detail
