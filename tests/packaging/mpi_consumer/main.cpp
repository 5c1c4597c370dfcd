#include <mproc/mpi.hpp>

#include <cstdio>
#include <ranges>

int square(int x) { return x * x; }

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::mpi::init(argc, argv);
    mproc::mpi::Pool pool({.workers_per_rank = 2});
    const auto squares = pool.map(square, std::views::iota(0, 10));
    std::printf("ranks %d, last square %d\n", mproc::mpi::size(), squares.back());
}
