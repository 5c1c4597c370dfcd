#pragma once
// Who is calling (thread id, process identity), and whether a process that took part in a
// primitive is still alive.
//
// A pid alone does not identify a process for long: it is reused once the process is reaped, and
// a dead process that is not reaped yet (a zombie) still answers kill(pid, 0). A process is
// therefore identified by its pid and its start time (field 22 of /proc/<pid>/stat, in clock ticks
// since boot), and it counts as dead when /proc has no such pid, the pid is a zombie, or the pid
// now belongs to a process that started at another time.
#include <sys/types.h>

#include <cstdint>

namespace mproc::detail {

// The calling thread's kernel thread id, cached per thread; the cache is cleared in the child
// after fork (the child's thread has a new id).
extern thread_local pid_t cached_thread_id;
pid_t fetch_thread_id() noexcept;
inline pid_t current_thread_id() noexcept {
    const pid_t tid = cached_thread_id;
    return tid != 0 ? tid : fetch_thread_id();
}

struct ProcessIdentity {
    std::int32_t pid = 0;  // 0: nobody
    std::uint32_t reserved = 0;
    std::uint64_t start_time = 0;
};

// The calling process's identity (cached; recomputed after fork).
ProcessIdentity self_identity() noexcept;
// The same, recomputed now: for fork handlers, which may run before the cache is reset.
ProcessIdentity fresh_self_identity() noexcept;

// The start time of `pid`, or 0 when there is no such process or it is a zombie.
std::uint64_t process_start_time(pid_t pid) noexcept;

// True while the process `identity` names runs (stopped counts as running).
bool process_alive(const ProcessIdentity& identity) noexcept;

// True when thread `tid` belongs to the calling process.
bool is_thread_of_this_process(pid_t tid) noexcept;

}  // namespace mproc::detail
