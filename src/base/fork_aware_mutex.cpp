#include "base/fork_aware_mutex.hpp"

#include "base/lifecycle.hpp"

#include <pthread.h>

#include <algorithm>
#include <vector>

namespace mproc::detail {
namespace {

// The list of live fork-aware mutexes, guarded by its own mutex, which the fork handlers take
// first so that no mutex is added or removed during a fork.
struct Registry {
    std::mutex mutex;
    std::vector<ForkAwareMutex*> members;
};

Registry& registry();

void unlock_all() {
    for (auto it = registry().members.rbegin(); it != registry().members.rend(); ++it) (*it)->unlock();
    registry().mutex.unlock();
}

Registry& registry() {
    static Registry* r = [] {
        auto* created = new Registry;  // never destroyed: mutexes may outlive static destruction
        register_fork_hooks(Floor::base, {.prepare =
                                              [] {
                                                  registry().mutex.lock();
                                                  for (ForkAwareMutex* m : registry().members) m->lock();
                                              },
                                          .parent = unlock_all,
                                          .child = unlock_all});
        return created;
    }();
    return *r;
}

}  // namespace

ForkAwareMutex::ForkAwareMutex() {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    r.members.push_back(this);
}

ForkAwareMutex::~ForkAwareMutex() {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    std::erase(r.members, this);
}

}  // namespace mproc::detail
