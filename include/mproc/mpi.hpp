#pragma once
// The same Pool across machines, on MPI (library target mproc::mpi; CMake: find_package(mproc
// COMPONENTS mpi)).
//
//   int main(int argc, char** argv) {
//       mproc::init(argc, argv);
//       mproc::mpi::init(argc, argv);   // rank 0 returns; every other rank serves tasks, then exits 0
//       mproc::mpi::Pool pool;          // its workers are the serving ranks' CPUs
//       auto squares = pool.map(square, std::views::iota(0, 1000));
//   }
//
//   mpirun -np 3 ./prog                          (one machine)
//   mpirun --hostfile hosts -np 17 ./prog        (a cluster: the same program on every host)
//
// Launch is static: mpirun starts the same program on every rank. Rank 0 runs main; the others
// never return from init: they serve the pools rank 0 makes, one after the other, and exit 0 when
// rank 0's program ends. At init the ranks compare the build-ids of the program and of its shared
// objects, and refuse to run mismatched binaries (MismatchError on rank 0, exit status 1 on the
// others). A program started without mpirun (or with one rank) runs with rank 0 only, says so,
// and its mpi::Pool runs the tasks in a local mproc::Pool.
//
// mproc::mpi::Pool is a BasicPool (pool.hpp): map, imap, imap_unordered, starmap, apply(_async),
// callbacks, progress, close, terminate and join as mproc::Pool has them, so code written against
// BasicPool runs on either. What a task is does not change: a function or a lambda without
// captures, Encodable arguments and result; code travels as a reference into the same binary.
//
// Failures, and what rank 0 sees (docs/mpi.md has the whole table):
//  - A task that throws: TaskError, as with the local pool.
//  - A task that crashes or is killed: each serving rank runs its tasks in a local mproc::Pool
//    (`workers_per_rank` workers, its start method as chosen), so the task fails with
//    WorkerLostError, the worker is replaced and the job goes on. With `run_in_rank` the rank runs
//    the tasks itself, for throughput, and such a crash ends the rank.
//  - A serving rank that dies or goes silent: ranks send heartbeats; one not heard from for
//    `heartbeat_timeout` is lost. The tasks it held fail with WorkerLostError naming the rank and
//    host, the tasks it was not sent go to the other ranks, and the pool goes on with fewer ranks
//    (when none is left, every task fails). Under a default mpirun a dead rank ends the whole job
//    (mpirun's own abort, about a second later); `mpirun --enable-recovery` keeps the others
//    running, and then the pool carries on as described.
//  - A task the serving rank cannot decode fails with its DecodeError, on rank 0.
//
// Nobody burns a core waiting: rank 0's dispatcher and idle serving ranks poll MPI with a bounded
// back-off (polling at once while answers are due, then sleeps growing to 4 ms), and are woken
// at once by local work.
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mproc/context.hpp"
#include "mproc/errors.hpp"
#include "mproc/pool.hpp"

namespace mproc::mpi {

namespace detail {
class Dispatcher;
}

// The ranks do not all run the same program (their build-ids differ).
class MismatchError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

struct InitOptions {
    // How often an idle serving rank (and rank 0) says it is alive.
    std::chrono::milliseconds heartbeat_interval{100};
    // A rank not heard from for this long is lost (its tasks fail with WorkerLostError). A serving
    // rank that loses rank 0 exits with status 1.
    std::chrono::milliseconds heartbeat_timeout{5000};
};

// Call right after mproc::init, before any other thread starts. On rank 0 it returns; on the
// other ranks it serves tasks and then ends the process with exit status 0. Calling it twice is a
// UsageError; the MPI library is finalized when rank 0's program exits.
void init(int& argc, char**& argv, InitOptions options = {});

// This process's rank and the number of ranks (0 and 1 before init, and without mpirun).
int rank() noexcept;
int size() noexcept;
// The host this rank runs on.
std::string host();

struct PoolOptions {
    // Workers of each serving rank's local pool. Unset: that rank's process_cpu_count().
    std::optional<int> workers_per_rank{};
    // The start method of those workers. Unset: the default (context.hpp).
    std::optional<StartMethod> context{};
    Initializer initializer{};
    std::optional<int> maxtasksperchild{};
    std::optional<std::chrono::milliseconds> task_timeout{};
    // Run tasks in the serving rank itself (one at a time per rank), with no local pool: the
    // fastest path, but a task that crashes ends its rank, and task_timeout does not apply.
    bool run_in_rank = false;
    // Chunks sent to a rank and not yet answered, per worker of that rank: enough to keep its
    // workers busy across the network's round trip. The tasks a lost rank held are at most this
    // many per worker.
    std::size_t chunks_in_flight_per_worker = 32;
};

// A BasicPool over the serving ranks. One mpi::Pool at a time (UsageError otherwise). Construct
// it on rank 0 after init: it starts a local pool on every serving rank and returns when they are
// ready.
class Pool final : public BasicPool {
public:
    explicit Pool(PoolOptions options = {});
    ~Pool() override;  // terminate(), as mproc::Pool's

    int processes() const noexcept override;
    // The serving ranks still in the pool.
    int ranks() const noexcept;

    void close() override;
    void terminate() override;
    void join() override;

private:
    void submit(std::vector<::mproc::detail::ChunkTask> tasks) override;
    bool running() const noexcept override;

    detail::Dispatcher* dispatcher_ = nullptr;  // rank 0's, which sends the tasks to the ranks
    std::unique_ptr<mproc::Pool> local_;        // without serving ranks: the tasks run here
};

}  // namespace mproc::mpi
