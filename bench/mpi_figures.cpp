// Figures for mproc::mpi::Pool (built with MPI only), next to a raw MPI master/worker farm
// measured in the same run. The mpi.pool figures run under mpirun: rank 0 measures, the other
// ranks serve (they never leave mproc::mpi::init). mpi.start runs without mpirun, since it starts
// mpirun itself.
#include <fcntl.h>
#include <mpi.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cpu_time.hpp"
#include "harness.hpp"
#include "mpi_bench.hpp"
#include "mproc/mpi.hpp"

extern char** environ;

namespace bench {

bool started_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr; }

int mpi_start_probe(int argc, char** argv) {
    mproc::mpi::init(argc, argv);
    mproc::mpi::Pool pool;
    return 0;
}

}  // namespace bench

namespace {

using Clock = std::chrono::steady_clock;

int square(int x) { return x * x; }

int kill_self(int) {
    ::raise(SIGKILL);
    return 0;
}

std::string host_name() {
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    return name;
}

// Under StartMethod::fork a worker's parent is the serving rank that runs it; 0 on another host,
// whose processes this one cannot see.
int serving_rank_pid_on(std::string host) { return host_name() == host ? static_cast<int>(::getppid()) : 0; }

void require_serving_ranks() {
    bench::skip_unless(mproc::mpi::size() >= 2, "needs serving ranks: run it under mpirun -np 3 (or more)");
}

const std::size_t kChunksInFlightPerWorker = mproc::mpi::PoolOptions{}.chunks_in_flight_per_worker;

// One mpi::Pool may exist at a time: a batch that needs another kind replaces the last one, outside
// its timed part; batches of one kind in a row share it.
struct PoolKind {
    bool run_in_rank = false;
    std::optional<int> workers_per_rank{};
    std::optional<mproc::StartMethod> context{};
    std::size_t chunks_in_flight_per_worker = kChunksInFlightPerWorker;
    bool operator==(const PoolKind&) const = default;
};

mproc::mpi::Pool& pool_of(const PoolKind& kind) {
    static std::unique_ptr<mproc::mpi::Pool> pool;  // destroyed at exit, before MPI ends
    static PoolKind current;
    if (pool && current == kind) return *pool;
    pool.reset();
    pool = std::make_unique<mproc::mpi::Pool>(mproc::mpi::PoolOptions{
        .workers_per_rank = kind.workers_per_rank,
        .context = kind.context,
        .run_in_rank = kind.run_in_rank,
        .chunks_in_flight_per_worker = kind.chunks_in_flight_per_worker,
    });
    current = kind;
    return *pool;
}

// The workers of one serving rank's local pool in a default mpi::Pool (one with run_in_rank).
std::size_t workers_per_rank(bool in_rank) {
    if (in_rank) return 1;
    static std::size_t workers = 0;
    if (workers == 0) {
        const auto& pool = pool_of({});
        workers = static_cast<std::size_t>(pool.processes() / std::max(pool.ranks(), 1));
    }
    return workers;
}

std::size_t serving_ranks() { return static_cast<std::size_t>(mproc::mpi::size() - 1); }

// Python's default chunksize: the items in about four chunks per worker.
std::size_t default_chunksize(std::size_t items, std::size_t processes) {
    const std::size_t per_chunk = 4 * processes;
    return (items + per_chunk - 1) / per_chunk;
}

// ---- The raw side: a master/worker farm in plain MPI ----
// It runs on MPI_COMM_WORLD (the pool's messages travel on a communicator of their own). Its
// workers are tasks of a run_in_rank pool, one per serving rank, each in a blocking
// receive/compute/send loop until told to stop; rank 0's measuring thread is the master. A
// message is one chunk: its index, then its ints.
constexpr int kTaskTag = 5301;
constexpr int kResultTag = 5302;
constexpr int kStopTag = 5303;
constexpr int kHelloTag = 5304;

long long raw_farm_worker(int max_chunk) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Send(&rank, 1, MPI_INT, 0, kHelloTag, MPI_COMM_WORLD);
    std::vector<int> message(static_cast<std::size_t>(max_chunk) + 1);
    long long items = 0;
    for (;;) {
        MPI_Status status;
        MPI_Recv(message.data(), max_chunk + 1, MPI_INT, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &status);
        if (status.MPI_TAG == kStopTag) return items;
        int count = 0;
        MPI_Get_count(&status, MPI_INT, &count);
        for (int i = 1; i < count; ++i) message[static_cast<std::size_t>(i)] = square(message[static_cast<std::size_t>(i)]);
        items += count - 1;
        MPI_Send(message.data(), count, MPI_INT, 0, kResultTag, MPI_COMM_WORLD);
    }
}

class RawFarm {
public:
    explicit RawFarm(std::size_t max_chunk) {
        // A window of one task per rank, so that each serving rank takes exactly one worker.
        auto& pool = pool_of({.run_in_rank = true, .chunks_in_flight_per_worker = 1});
        bench::require(pool.ranks() == mproc::mpi::size() - 1, "a serving rank is missing from the pool");
        for (std::size_t r = 0; r < serving_ranks(); ++r)
            workers_.push_back(pool.apply_async(raw_farm_worker, static_cast<int>(max_chunk)));
        // Every worker says hello from its own rank before the timing starts.
        const auto deadline = Clock::now() + std::chrono::seconds(60);
        while (hello_from_.size() < serving_ranks()) {
            int flag = 0;
            MPI_Status status;
            MPI_Iprobe(MPI_ANY_SOURCE, kHelloTag, MPI_COMM_WORLD, &flag, &status);
            if (!flag) {
                bench::require(Clock::now() < deadline, "the farm's workers did not start, one on each serving rank");
                std::this_thread::sleep_for(std::chrono::microseconds(100));
                continue;
            }
            int rank = 0;
            MPI_Recv(&rank, 1, MPI_INT, status.MPI_SOURCE, kHelloTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            bench::require(hello_from_.insert(rank).second, "two of the farm's workers run on one rank");
        }
    }

    RawFarm(const RawFarm&) = delete;
    RawFarm& operator=(const RawFarm&) = delete;

    ~RawFarm() {
        if (!stopped_) stop();
    }

    // Stops the workers and checks that they computed every item sent.
    void finish() {
        stop();
        long long computed = 0;
        for (auto& worker : workers_) computed += worker.get();
        bench::require(computed == sent_, "the farm's workers did not compute every item sent");
    }

    // `items` ints in chunks of `chunk`, at most `window` chunks in flight per worker rank,
    // dealt round robin as the pool's dispatcher does, then to whichever rank answers.
    bench::Seconds map(std::size_t items, std::size_t chunk, std::size_t window) {
        const auto start = Clock::now();
        const std::size_t chunks = (items + chunk - 1) / chunk;
        std::vector<int> outbox;
        outbox.reserve(items + chunks);
        std::vector<std::size_t> offsets;
        offsets.reserve(chunks + 1);
        for (std::size_t k = 0; k < chunks; ++k) {
            offsets.push_back(outbox.size());
            outbox.push_back(static_cast<int>(k));
            for (std::size_t i = k * chunk; i < std::min(items, (k + 1) * chunk); ++i) outbox.push_back(static_cast<int>(i));
        }
        offsets.push_back(outbox.size());
        std::vector<int> results(items);
        std::vector<MPI_Request> sends;
        sends.reserve(chunks);
        std::size_t next = 0;
        const auto send_next = [&](int rank) {
            MPI_Isend(outbox.data() + offsets[next], static_cast<int>(offsets[next + 1] - offsets[next]), MPI_INT, rank,
                      kTaskTag, MPI_COMM_WORLD, &sends.emplace_back());
            ++next;
        };
        for (std::size_t w = 0; w < window; ++w)
            for (int rank : hello_from_)
                if (next < chunks) send_next(rank);
        std::vector<int> reply(chunk + 1);
        for (std::size_t done = 0; done < chunks; ++done) {
            MPI_Status status;
            MPI_Recv(reply.data(), static_cast<int>(chunk + 1), MPI_INT, MPI_ANY_SOURCE, kResultTag, MPI_COMM_WORLD, &status);
            int count = 0;
            MPI_Get_count(&status, MPI_INT, &count);
            const auto k = static_cast<std::size_t>(reply[0]);
            std::copy(reply.begin() + 1, reply.begin() + count, results.begin() + static_cast<std::ptrdiff_t>(k * chunk));
            if (next < chunks) send_next(status.MPI_SOURCE);
        }
        MPI_Waitall(static_cast<int>(sends.size()), sends.data(), MPI_STATUSES_IGNORE);
        const bench::Seconds took = Clock::now() - start;
        sent_ += static_cast<long long>(items);
        bench::require(results.size() == items && results.back() == square(static_cast<int>(items) - 1), "wrong results");
        return took;
    }

    // One int to the first serving rank and its square back, `n` times.
    bench::Seconds round_trips(std::size_t n) {
        const int rank = *hello_from_.begin();
        int message[2] = {0, 0};
        const bench::Seconds took = bench::time_loop(n, [&] {
            message[1] = 7;
            MPI_Send(message, 2, MPI_INT, rank, kTaskTag, MPI_COMM_WORLD);
            MPI_Recv(message, 2, MPI_INT, rank, kResultTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            bench::require(message[1] == 49, "wrong result");
        });
        sent_ += static_cast<long long>(n);
        return took;
    }

private:
    void stop() {
        stopped_ = true;
        for (int rank : hello_from_) MPI_Send(nullptr, 0, MPI_INT, rank, kStopTag, MPI_COMM_WORLD);
    }

    std::vector<mproc::AsyncResult<long long>> workers_;
    std::set<int> hello_from_;
    long long sent_ = 0;
    bool stopped_ = false;
};

// ---- The figures ----

// `maps` maps of `items` each; the time is theirs alone.
bench::Seconds mproc_maps(std::size_t items, std::optional<std::size_t> chunksize, bool in_rank, std::size_t maps = 1) {
    require_serving_ranks();
    auto& pool = pool_of({.run_in_rank = in_rank});
    bench::Seconds took{};
    for (std::size_t m = 0; m < maps; ++m) {
        const auto start = Clock::now();
        const auto r = chunksize ? pool.map(square, std::views::iota(0, static_cast<int>(items)), *chunksize)
                                 : pool.map(square, std::views::iota(0, static_cast<int>(items)));
        took += Clock::now() - start;
        bench::require(r.size() == items && r.back() == square(static_cast<int>(items) - 1), "wrong results");
    }
    return took;
}

bench::Seconds raw_maps(std::size_t items, std::optional<std::size_t> chunksize, bool in_rank, std::size_t maps = 1) {
    require_serving_ranks();
    const std::size_t workers = workers_per_rank(in_rank);
    const std::size_t chunk = chunksize ? *chunksize : default_chunksize(items, serving_ranks() * workers);
    RawFarm farm(chunk);
    bench::Seconds took{};
    for (std::size_t m = 0; m < maps; ++m) took += farm.map(items, chunk, workers * kChunksInFlightPerWorker);
    farm.finish();
    return took;
}

// One iteration is one item: a batch is as many maps of 100k items as cover its iterations, so
// that the chunks stay those of a 100k-item map whatever the batch size.
constexpr std::size_t kDefaultMapItems = 100'000;

template <class MapsFn>
bench::Seconds per_item_of_default_maps(std::size_t n, MapsFn run_maps) {
    const std::size_t maps = (n + kDefaultMapItems - 1) / kDefaultMapItems;
    return run_maps(maps) * (static_cast<double>(n) / static_cast<double>(maps * kDefaultMapItems));
}

bench::Seconds mproc_round_trips(std::size_t n, bool in_rank) {
    require_serving_ranks();
    auto& pool = pool_of({.run_in_rank = in_rank});
    return bench::time_loop(n, [&pool] { bench::require(pool.apply_async(square, 7).get() == 49, "wrong result"); });
}

bench::Seconds raw_round_trips(std::size_t n) {
    require_serving_ranks();
    RawFarm farm(1);
    const bench::Seconds took = farm.round_trips(n);
    farm.finish();
    return took;
}

void register_pool_figures(bool in_rank) {
    const std::string suffix = in_rank ? ".in_rank" : "";
    const std::string pool = in_rank ? "mpi::Pool({.run_in_rank = true})" : "mpi::Pool()";
    const std::string farm_window = in_rank ? "8 chunks in flight per rank, as the pool keeps"
                                            : "workers x 8 chunks in flight per rank, as the pool keeps";
    bench::Register{{
        .name = "mpi.pool.map.chunk1" + suffix,
        .unit = bench::per_second("task"),
        .description = pool + ".map(x*x, n items, chunksize=1); raw: an MPI farm, one int per message, " + farm_window,
        .impls = {
            {"mproc", [in_rank](std::size_t n) { return mproc_maps(n, 1, in_rank); }},
            {"raw", [in_rank](std::size_t n) { return raw_maps(n, 1, in_rank); }},
        },
    }};
    bench::Register{{
        .name = "mpi.pool.map.default" + suffix,
        .unit = bench::per_second("task"),
        .description = pool + ".map(x*x, 100k items), default chunksize; raw: an MPI farm with the same chunks, "
                              "one message per chunk; one iteration is one item",
        .impls = {
            {"mproc",
             [in_rank](std::size_t n) {
                 return per_item_of_default_maps(
                     n, [&](std::size_t maps) { return mproc_maps(kDefaultMapItems, {}, in_rank, maps); });
             }},
            {"raw",
             [in_rank](std::size_t n) {
                 return per_item_of_default_maps(
                     n, [&](std::size_t maps) { return raw_maps(kDefaultMapItems, {}, in_rank, maps); });
             }},
        },
    }};
    bench::Register{{
        .name = "mpi.pool.apply_async.rt" + suffix,
        .unit = bench::micros_per("call"),
        .description = pool + ".apply_async(x*x, 7).get(); raw: MPI_Send of one int to rank 1, MPI_Recv of its square",
        .impls = {
            {"mproc", [in_rank](std::size_t n) { return mproc_round_trips(n, in_rank); }},
            {"raw", [](std::size_t n) { return raw_round_trips(n); }},
        },
    }};
}

const bool pool_figures_registered = [] {
    register_pool_figures(false);
    register_pool_figures(true);
    return true;
}();

const bench::Register worker_lost{{
    .name = "mpi.pool.worker_lost",
    .unit = bench::millis_per("loss"),
    .description = "mpi::Pool({.workers_per_rank = 1}): a task that SIGKILLs its worker, until its "
                   "WorkerLostError reaches rank 0's get()",
    .impls = {
        {"mproc", [](std::size_t n) {
             require_serving_ranks();
             auto& pool = pool_of({.workers_per_rank = 1});
             const int ranks = pool.ranks();
             bench::Seconds took{};
             for (std::size_t i = 0; i < n; ++i) {
                 const auto start = Clock::now();
                 auto result = pool.apply_async(kill_self, 0);
                 try {
                     result.get();
                     bench::require(false, "the task's worker was not lost");
                 } catch (const mproc::WorkerLostError& e) {
                     took += Clock::now() - start;
                     bench::require(e.exitcode() == -SIGKILL, "the task failed, but not by its worker's SIGKILL");
                 }
                 // A task that completes, untimed: a local pool whose new workers only ever die
                 // gives up (its workers "keep dying before running any task").
                 bench::require(pool.apply(square, 3) == 9, "wrong result after a lost worker");
             }
             bench::require(pool.ranks() == ranks, "a serving rank was lost");
             return took;
         }},
    },
}};

const bench::Register idle_cpu{{
    .name = "mpi.pool.idle_cpu",
    .unit = bench::cpu_time::millis_per_idle_second(),
    .description = "CPU ms per second of an mpi::Pool (fork workers) with nothing to do, summed over rank 0 and "
                   "the serving ranks of this host (their threads' schedstat)",
    .impls = {
        {"mproc", [](std::size_t n) {
             require_serving_ranks();
             auto& pool = pool_of({.context = mproc::StartMethod::fork});
             std::set<int> pids{static_cast<int>(::getpid())};
             for (int pid : pool.map(serving_rank_pid_on, std::vector<std::string>(64, host_name()), 1))
                 if (pid != 0) pids.insert(pid);
             bench::require(pids.size() >= 2, "no serving rank on this host");
             // Past the short spin that follows activity: idleness is what is measured.
             std::this_thread::sleep_for(std::chrono::milliseconds(200));
             const auto used = [&pids] {
                 double total = 0;
                 for (int pid : pids) total += bench::cpu_time::process_seconds(pid);
                 return total;
             };
             const double before = used();
             std::this_thread::sleep_for(bench::cpu_time::idle_slice * static_cast<long>(n));
             return bench::Seconds(used() - before);
         }},
    },
    .fixed_iterations = bench::cpu_time::idle_slices_per_batch,
    .spread_floor = bench::cpu_time::idle_spread_floor,
}};

// ---- Starting a job: mpirun, from a plain run ----

#ifndef MPROC_BENCH_MPIEXEC
#error "MPROC_BENCH_MPIEXEC names mpirun (CMake's MPIEXEC_EXECUTABLE)"
#endif

std::string this_program() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

// Runs `mpirun -np 3 <program...>` to its end, n times; its standard output is dropped.
bench::Seconds mpirun_jobs(std::size_t n, const std::vector<std::string>& program) {
    bench::skip_unless(!bench::started_by_mpirun(), "starts mpirun itself: run mproc_bench without mpirun");
    // Three ranks on any machine (oversubscribed where it has fewer CPUs), also as root; a setting
    // of the caller's own wins.
    ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    if (::geteuid() == 0) {
        ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
        ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    }
    std::vector<std::string> args{MPROC_BENCH_MPIEXEC, "-np", "3"};
    args.insert(args.end(), program.begin(), program.end());
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    return bench::time_loop(n, [&] {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        pid_t pid = 0;
        const int error = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        bench::require(error == 0, "cannot start mpirun");
        int status = 0;
        bench::require(::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                       "the MPI job failed");
    });
}

const bench::Register mpi_start{{
    .name = "mpi.start",
    .unit = bench::millis_per("start"),
    .description = "mpirun -np 3 of a program that makes an mpi::Pool (default: a local pool per serving rank) and "
                   "ends; raw: mpirun -np 3 of MPI_Init + MPI_Finalize",
    .impls = {
        {"mproc", [](std::size_t n) { return mpirun_jobs(n, {this_program(), "--mpi-start-probe"}); }},
        {"raw", [](std::size_t n) { return mpirun_jobs(n, {MPROC_BENCH_MPI_TRIVIAL}); }},
    },
}};

}  // namespace
