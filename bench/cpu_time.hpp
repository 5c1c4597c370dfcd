#pragma once
// The CPU time processes and threads have used, for the figures of what something idle costs
// (pool.idle_cpu, mpi.pool.idle_cpu). Read from the scheduler's statistics,
// /proc/<pid>/task/<tid>/schedstat, in nanoseconds, where /proc/<pid>/stat counts clock ticks.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "harness.hpp"

namespace bench::cpu_time {

inline std::filesystem::path tasks_of(int pid) { return "/proc/" + std::to_string(pid) + "/task"; }

// The thread ids of a process now.
inline std::set<int> threads_of(int pid) {
    std::set<int> threads;
    for (const auto& thread : std::filesystem::directory_iterator(tasks_of(pid)))
        threads.insert(std::stoi(thread.path().filename().string()));
    return threads;
}

// 0 for a thread that has ended.
inline double thread_seconds(int pid, int tid) {
    std::ifstream schedstat(tasks_of(pid) / std::to_string(tid) / "schedstat");
    long long run_ns = 0;
    return schedstat >> run_ns ? static_cast<double>(run_ns) / 1e9 : 0.0;
}

// All the process's threads.
inline double process_seconds(int pid) {
    double seconds = 0;
    for (const int tid : threads_of(pid)) seconds += thread_seconds(pid, tid);
    return seconds;
}

// An idle figure's iteration is this much idleness; its batch returns the CPU time used meanwhile,
// and its value is in milliseconds of CPU per second.
constexpr std::chrono::milliseconds idle_slice{10};
constexpr std::size_t idle_slices_per_batch = 100;  // one second
// The spread check's floor for these figures (Figure::spread_floor): a tenth of a millisecond of
// CPU per second, 0.01% of a CPU, is as good as none.
constexpr double idle_spread_floor = 0.1;

inline Unit millis_per_idle_second() {
    return {"ms/idle_s", [](double cpu_seconds_per_slice) {
                return cpu_seconds_per_slice * 1e3 / std::chrono::duration<double>(idle_slice).count();
            }};
}

}  // namespace bench::cpu_time
