// A serving rank dies mid-map. Run under `mpirun --enable-recovery -np 3`, rank 0 must see the
// tasks that rank held fail with WorkerLostError, every other task succeed, and the pool go on
// with the rank left; under a default mpirun the whole job must end, with mpirun naming the dead
// rank, instead of hanging. Prints a summary line the test checks; exit status 0 when it holds.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ranges>
#include <string>
#include <thread>
#include <vector>

#include "mproc/mpi.hpp"

namespace {

// Task 5 kills the serving rank that runs it (under fork, a worker's parent); the rest take a
// while so that the map is in full flow when it happens.
int work(int item) {
    if (item == 5) ::kill(::getppid(), SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return item * 2;
}

int square(int x) { return x * x; }

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::mpi::init(argc, argv, {.heartbeat_interval = std::chrono::milliseconds(50),
                                  .heartbeat_timeout = std::chrono::milliseconds(3000)});
    mproc::mpi::Pool pool({.workers_per_rank = 2, .context = mproc::StartMethod::fork});
    const int ranks_before = pool.ranks();
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 60; ++i) results.push_back(pool.apply_async(work, i));
    int ok = 0, lost = 0, other = 0;
    for (int i = 0; i < 60; ++i) {
        try {
            if (results[static_cast<std::size_t>(i)].get(std::chrono::seconds(120)) == i * 2) ++ok;
            else ++other;
        } catch (const mproc::WorkerLostError& e) {
            ++lost;
            if (lost == 1) std::printf("first loss: %s\n", e.what());
        } catch (const std::exception& e) {
            ++other;
            std::printf("other error: %s\n", e.what());
        }
    }
    const int ranks_after = pool.ranks();
    // The pool goes on with the rank left.
    const auto squares = pool.map(square, std::views::iota(0, 50));
    pool.close();
    pool.join();
    std::printf("ranks %d -> %d, tasks ok %d, lost %d, other %d, after: %d\n", ranks_before, ranks_after, ok, lost, other,
                squares.at(49));
    std::fflush(stdout);
    const bool held = ranks_after == ranks_before - 1 && lost >= 1 && other == 0 && ok + lost == 60 && squares.at(49) == 2401;
    return held ? 0 : 1;
}
