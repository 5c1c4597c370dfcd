// Built twice, as two different programs (MPROC_TEST_VARIANT 1 and 2): started together under
// mpirun (`-np 1 a : -np 1 b`), rank 0 must refuse with MismatchError naming the rank; started
// alone, each runs. Exit status 3 on MismatchError, 0 when a task ran.
#include <cstdio>

#include "mproc/mpi.hpp"

namespace {
int variant(int x) { return x + MPROC_TEST_VARIANT; }
}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    try {
        mproc::mpi::init(argc, argv);
    } catch (const mproc::mpi::MismatchError& e) {
        std::printf("MismatchError: %s\n", e.what());
        return 3;
    }
    mproc::mpi::Pool pool({.workers_per_rank = 1});
    std::printf("variant %d ran a task: %d\n", MPROC_TEST_VARIANT, pool.apply(variant, 100));
    return 0;
}
