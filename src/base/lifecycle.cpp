// The fork-hook and exit-task registries (lifecycle.hpp).
#include "base/lifecycle.hpp"

#include <pthread.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "base/fork_aware_mutex.hpp"

namespace mproc::detail {

std::atomic<std::uint64_t> fork_generation_counter{0};

namespace {

struct Entry {
    Floor floor;
    ForkHooks hooks;
};

constexpr std::size_t kMaxForkHooks = 64;

// A fixed array, so that the hooks that run in a forked child allocate nothing. The mutex is taken
// by the prepare hook and released by the parent and child hooks: no registration runs across a
// fork.
struct ForkRegistry {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    std::array<Entry, kMaxForkHooks> entries{};
    std::size_t count = 0;
};

ForkRegistry fork_registry;  // constant-initialised: usable from any static initialiser

void run_prepare() {
    ::pthread_mutex_lock(&fork_registry.mutex);
    for (std::size_t i = fork_registry.count; i-- > 0;)
        if (auto* hook = fork_registry.entries[i].hooks.prepare) hook();
}

void run_parent() {
    for (std::size_t i = 0; i < fork_registry.count; ++i)
        if (auto* hook = fork_registry.entries[i].hooks.parent) hook();
    ::pthread_mutex_unlock(&fork_registry.mutex);
}

void run_child() {
    fork_generation_counter.fetch_add(1, std::memory_order_relaxed);
    for (std::size_t i = 0; i < fork_registry.count; ++i)
        if (auto* hook = fork_registry.entries[i].hooks.child) hook();
    ::pthread_mutex_unlock(&fork_registry.mutex);
}

void install_fork_handlers() noexcept {
    static const int installed = ::pthread_atfork(run_prepare, run_parent, run_child);
    static_cast<void>(installed);
}
// At start-up, so that the generation counts every fork, even one before any hook registered.
[[maybe_unused]] const bool installed_at_startup = (install_fork_handlers(), true);

struct ExitRegistry {
    ForkAwareMutex mutex;
    std::vector<std::function<void()>> before_children;
    std::vector<std::function<void()>> after_children;
};

ExitRegistry& exit_registry() {
    static auto* registry = new ExitRegistry;  // never destroyed: the exit sequence runs after statics die
    return *registry;
}

ProcessHooks process_hooks;  // constant-initialised

}  // namespace

void register_fork_hooks(Floor floor, ForkHooks hooks) noexcept {
    install_fork_handlers();
    ::pthread_mutex_lock(&fork_registry.mutex);
    if (fork_registry.count == kMaxForkHooks) {
        std::fputs("mproc: too many fork hooks registered\n", stderr);
        std::abort();
    }
    // Stable insertion by floor.
    std::size_t at = fork_registry.count;
    while (at > 0 && static_cast<int>(fork_registry.entries[at - 1].floor) > static_cast<int>(floor)) {
        fork_registry.entries[at] = fork_registry.entries[at - 1];
        --at;
    }
    fork_registry.entries[at] = Entry{floor, hooks};
    ++fork_registry.count;
    ::pthread_mutex_unlock(&fork_registry.mutex);
}


void at_exit(ExitPhase phase, std::function<void()> task) {
    ExitRegistry& registry = exit_registry();
    std::lock_guard lock(registry.mutex);
    (phase == ExitPhase::before_children ? registry.before_children : registry.after_children)
        .push_back(std::move(task));
}

std::vector<std::function<void()>> take_exit_tasks(ExitPhase phase) {
    ExitRegistry& registry = exit_registry();
    std::vector<std::function<void()>> tasks;
    std::lock_guard lock(registry.mutex);
    tasks.swap(phase == ExitPhase::before_children ? registry.before_children : registry.after_children);
    return tasks;
}

void forget_exit_tasks() noexcept {
    ExitRegistry& registry = exit_registry();
    std::lock_guard lock(registry.mutex);
    registry.before_children.clear();
    registry.after_children.clear();
}

void set_process_hooks(ProcessHooks hooks) noexcept { process_hooks = hooks; }

std::string current_process_name() {
    return process_hooks.process_name ? process_hooks.process_name() : std::string("MainProcess");
}

void install_exit_sequence() {
    if (process_hooks.install_exit_sequence) process_hooks.install_exit_sequence();
}

int parent_process_pid() { return process_hooks.parent_pid ? process_hooks.parent_pid() : 0; }

}  // namespace mproc::detail
