// Figures for mproc::Pool. Tasks are trivial (x*x) to measure the pool's own cost, except the
// CPU-bound pair, which measures how much of two processes' worth of work two workers deliver,
// and pool.idle_cpu, what a pool with nothing to do costs.
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <ranges>
#include <set>
#include <thread>
#include <vector>

#include "cpu_time.hpp"
#include "harness.hpp"
#include "mproc/pool.hpp"

namespace {

int square(int x) { return x * x; }

// About 20 ms of arithmetic, the kind of task a pool exists for.
long long burn(int seed) {
    unsigned long long x = static_cast<unsigned long long>(seed) + 1;
    for (int i = 0; i < 12'000'000; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<long long>(x >> 1);
}

mproc::Pool& pool_of(int processes) {
    static std::unique_ptr<mproc::Pool> pools[3];
    auto& pool = pools[processes];
    if (!pool) pool = std::make_unique<mproc::Pool>(mproc::PoolOptions{.processes = processes});
    return *pool;
}

const bench::Register map_chunk1{{
    .name = "pool.map.chunk1",
    .unit = bench::per_second("task"),
    .description = "Pool(2).map(x*x, n items, chunksize=1): one task per item",
    .impls = {
        {"mproc", [](std::size_t n) {
             auto& pool = pool_of(2);
             const auto start = std::chrono::steady_clock::now();
             auto r = pool.map(square, std::views::iota(0, static_cast<int>(n)), std::size_t{1});
             const bench::Seconds took = std::chrono::steady_clock::now() - start;
             bench::require(r.size() == n && r.back() == square(static_cast<int>(n) - 1), "wrong results");
             r = {};
             ::malloc_trim(0);
             return took;
         }},
    },
}};

const bench::Register map_default{{
    .name = "pool.map.default",
    .unit = bench::per_second("task"),
    .description = "Pool(2).map(x*x, 100k items) with the default chunksize; one iteration is one item",
    .impls = {
        {"mproc", [](std::size_t n) {
             auto& pool = pool_of(2);
             const std::size_t items = std::max<std::size_t>(n, 100'000);
             const auto start = std::chrono::steady_clock::now();
             auto r = pool.map(square, std::views::iota(0, static_cast<int>(items)));
             const bench::Seconds took = std::chrono::steady_clock::now() - start;
             bench::require(r.size() == items, "wrong results");
             r = {};
             ::malloc_trim(0);  // give the batch's memory back: a large parent makes every later fork slower
             return took * (static_cast<double>(n) / static_cast<double>(items));
         }},
    },
}};

const bench::Register apply_round_trip{{
    .name = "pool.apply_async.rt",
    .unit = bench::micros_per("call"),
    .description = "Pool(2).apply_async(x*x).get(): submit to result",
    .impls = {
        {"mproc", [](std::size_t n) {
             auto& pool = pool_of(2);
             return bench::time_loop(n, [&pool] { bench::require(pool.apply_async(square, 7).get() == 49, "wrong result"); });
         }},
        {"raw", [](std::size_t n) {
             // The floor under any pool: a request and a reply between two processes (pipes).
             int to_child[2], to_parent[2];
             bench::require(::pipe(to_child) == 0 && ::pipe(to_parent) == 0, "pipe failed");
             const pid_t pid = ::fork();
             if (pid == 0) {
                 ::close(to_child[1]);
                 ::close(to_parent[0]);
                 int x;
                 while (::read(to_child[0], &x, sizeof x) == sizeof x) {
                     x *= x;
                     if (::write(to_parent[1], &x, sizeof x) != sizeof x) break;
                 }
                 ::_exit(0);
             }
             ::close(to_child[0]);
             ::close(to_parent[1]);
             const bench::Seconds took = bench::time_loop(n, [&] {
                 int x = 7;
                 bench::require(::write(to_child[1], &x, sizeof x) == sizeof x, "write failed");
                 bench::require(::read(to_parent[0], &x, sizeof x) == sizeof x && x == 49, "read failed");
             });
             ::close(to_child[1]);
             ::close(to_parent[0]);
             ::waitpid(pid, nullptr, 0);
             return took;
         }},
    },
}, bench::LoadedTwin{.impls = {"mproc", "raw"}}};

// The same 8 CPU-bound tasks on 1 and on 2 workers; raw: forked processes splitting them alike.
bench::Seconds burn_on_pool(std::size_t iterations, int processes) {
    auto& pool = pool_of(processes);
    return bench::time_loop(iterations, [&pool] {
        auto r = pool.map(burn, std::views::iota(0, 8), std::size_t{1});
        bench::require(r.size() == 8, "wrong results");
    });
}

bench::Seconds burn_on_forks(std::size_t iterations, int processes) {
    return bench::time_loop(iterations, [processes] {
        std::vector<pid_t> children;
        for (int p = 0; p < processes; ++p) {
            const pid_t pid = ::fork();
            if (pid == 0) {
                long long sink = 0;
                for (int task = p; task < 8; task += processes) sink += burn(task);
                ::_exit(sink == 42 ? 1 : 0);
            }
            children.push_back(pid);
        }
        for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
    });
}

const bench::Register cpu_one{{
    .name = "pool.cpu.workers1",
    .unit = bench::micros_per("batch"),
    .description = "8 CPU-bound tasks (~20 ms each) on a Pool(1); raw: one forked process doing them",
    .impls = {
        {"mproc", [](std::size_t n) { return burn_on_pool(n, 1); }},
        {"raw", [](std::size_t n) { return burn_on_forks(n, 1); }},
    },
}};

const bench::Register cpu_two{{
    .name = "pool.cpu.workers2",
    .unit = bench::micros_per("batch"),
    .description = "8 CPU-bound tasks (~20 ms each) on a Pool(2); raw: two forked processes sharing them",
    .impls = {
        {"mproc", [](std::size_t n) { return burn_on_pool(n, 2); }},
        {"raw", [](std::size_t n) { return burn_on_forks(n, 2); }},
    },
}};

// A new pool each batch: its threads are those this process gained with it, its workers those it
// lists; the other figures' pools (pool_of) idle meanwhile and are not counted.
bench::Seconds idle_pool_cpu(std::size_t slices) {
    namespace cpu_time = bench::cpu_time;
    const int self = static_cast<int>(::getpid());
    const std::set<int> threads_before = cpu_time::threads_of(self);
    mproc::Pool pool(mproc::PoolOptions{.processes = 2});
    bench::require(pool.apply(square, 7) == 49, "wrong result");
    std::set<int> pool_threads;
    for (const int tid : cpu_time::threads_of(self))
        if (!threads_before.contains(tid)) pool_threads.insert(tid);
    std::vector<int> workers;
    for (const mproc::Process& worker : pool.workers())
        if (const auto pid = worker.pid()) workers.push_back(*pid);
    bench::require(workers.size() == 2, "the pool has not 2 workers");
    const auto used = [&] {
        double seconds = 0;
        for (const int tid : pool_threads) seconds += cpu_time::thread_seconds(self, tid);
        for (const int pid : workers) seconds += cpu_time::process_seconds(pid);
        return seconds;
    };
    // Past the short spin that follows activity: idleness is what is measured.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const double before = used();
    std::this_thread::sleep_for(cpu_time::idle_slice * static_cast<long>(slices));
    return bench::Seconds(used() - before);
}

const bench::Register idle_cpu{{
    .name = "pool.idle_cpu",
    .unit = bench::cpu_time::millis_per_idle_second(),
    .description = "CPU ms per second of a Pool(2) with nothing to do (after one apply), summed over the threads it "
                   "started in this process (the dispatcher) and its worker processes (their threads' schedstat)",
    .impls = {{"mproc", idle_pool_cpu}},
    .fixed_iterations = bench::cpu_time::idle_slices_per_batch,
    .spread_floor = bench::cpu_time::idle_spread_floor,
}};

}  // namespace
