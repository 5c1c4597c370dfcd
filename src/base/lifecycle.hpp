#pragma once
// What every floor must do around fork(2) and at the end of a process, registered in one place.
//
// Fork hooks: one pthread_atfork registration runs every floor's hooks in a fixed order, whatever
// the order in which static initialisers or first uses registered them: `prepare` top floor first
// (a floor may still use the floors below while it prepares, and the base floor takes its
// fork-aware mutexes last), `parent` and `child` bottom floor first (in the child, the fork
// generation, the identity caches and the fork-aware mutexes are right before any floor above
// uses them). Within one floor, hooks run in registration order (`prepare` in reverse).
//
// Exit tasks: the work a process does at its end (Python's util.Finalize with an exitpriority),
// in two phases around the handling of the remaining children. They belong to the process that
// registered them: a child starts with none.
//
// The process floor answers three questions the floors below ask: the calling process's name (for
// log records and messages), who started it (the shared buffers' keepers) and, when the first log
// record is made, making sure the exit sequence that logs "process shutting down" is installed.
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mproc::detail {

// The floors of docs/architecture.md, bottom up; the numbers order the fork hooks.
enum class Floor : int { base = 0, transport = 1, shm = 2, sync = 2, process = 3, queue = 4, pool = 5, managers = 5 };

struct ForkHooks {
    void (*prepare)() = nullptr;
    void (*parent)() = nullptr;
    void (*child)() = nullptr;
};

// Adds hooks for every later fork. Safe to call from static initialisers and from several threads;
// hooks cannot be removed. Aborts when more than a fixed number (64) are registered: each call
// site registers once.
void register_fork_hooks(Floor floor, ForkHooks hooks) noexcept;

// Counts the forks this process descends from (bumped first in every forked child, before any user
// code). Caches keyed on it notice a fork without a hook of their own.
extern std::atomic<std::uint64_t> fork_generation_counter;
inline std::uint64_t fork_generation() noexcept { return fork_generation_counter.load(std::memory_order_relaxed); }

// When an exit task runs relative to the handling of the remaining children (Python's finalizers
// with exitpriority >= 0 run before, the others after).
enum class ExitPhase { before_children, after_children };

// Registers work for this process's exit sequence.
void at_exit(ExitPhase phase, std::function<void()> task);

// The tasks of `phase`, removed from the registry, in registration order (the exit sequence runs
// them; exit_tasks_forget drops all of them in a new child).
std::vector<std::function<void()>> take_exit_tasks(ExitPhase phase);
void forget_exit_tasks() noexcept;

struct ProcessHooks {
    std::string (*process_name)() = nullptr;           // the calling process's name
    void (*install_exit_sequence)() = nullptr;         // idempotent
    int (*parent_pid)() = nullptr;                     // the process that started this one; 0 in a main program
};
// Set once by the process floor (a static initialiser).
void set_process_hooks(ProcessHooks hooks) noexcept;
// The calling process's name; "MainProcess" when the process floor is not linked in.
std::string current_process_name();
void install_exit_sequence();
// The pid of the process that started the calling one (for a fork server's child, the process
// that asked for it), or 0 in a main program and when the process floor is not linked in.
int parent_process_pid();

}  // namespace mproc::detail
