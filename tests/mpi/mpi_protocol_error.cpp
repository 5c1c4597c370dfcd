// A message between ranks that its receiver cannot read. Rank 0 forges one to serving rank 1 on
// mproc's own communicator (what a corrupted or foreign message would look like); rank 1 must say
// it could not read it, rank 0 must declare that rank lost with the reason, and the pool must go on
// with the other rank. Run under `mpirun --enable-recovery -np 3`; exit status 0 when it holds.
#include <chrono>
#include <cstdio>
#include <ranges>
#include <thread>
#include <vector>

#include "mpi/protocol.hpp"
#include "mpi/runtime.hpp"
#include "mproc/mpi.hpp"

namespace {
int square(int x) { return x * x; }
}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::mpi::init(argc, argv);
    mproc::mpi::Pool pool({.workers_per_rank = 1});
    const int before = pool.ranks();
    const bool first_ok = pool.map(square, std::views::iota(0, 20), 1).at(19) == 361;

    // A kind byte no message has, then bytes no decoder expects.
    std::vector<unsigned char> garbage{0xee, 0x01, 0x02, 0x03};
    MPI_Send(garbage.data(), static_cast<int>(garbage.size()), MPI_BYTE, 1, mproc::mpi::detail::kToServer,
             mproc::mpi::detail::runtime()->comm);
    // Wait for the state: rank 1 is out of the pool (its answer comes within a round trip; the
    // deadline only bounds a failure).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (pool.ranks() == before && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const int after = pool.ranks();
    const bool rest_ok = pool.map(square, std::views::iota(0, 20), 1).at(19) == 361;
    pool.close();
    pool.join();
    std::printf("ranks %d -> %d, maps %s\n", before, after, first_ok && rest_ok ? "ok" : "wrong");
    std::fflush(stdout);
    return before == 2 && after == 1 && first_ok && rest_ok ? 0 : 1;
}
