// mproc_bench: mproc's figures next to the raw system primitives they stand on. The harness is in
// harness.cpp; the figures register themselves from one file per area (process_figures.cpp, ...).
#include <cstdlib>
#include <cstring>

#include "harness.hpp"
#include "mproc/process.hpp"

#ifdef MPROC_BENCH_WITH_MPI
#include "mpi_bench.hpp"
#include "mproc/mpi.hpp"
#endif

int main(int argc, char** argv) {
    // The raw side of process.start_join.spawn executes this program and wants it to end at
    // once, as a spawned mproc child of a no-op target does, minus mproc's work.
    if (argc > 1 && std::strcmp(argv[1], "--exit-at-once") == 0) return 0;
    mproc::init(argc, argv);
#ifdef MPROC_BENCH_WITH_MPI
    if (argc > 1 && std::strcmp(argv[1], "--mpi-start-probe") == 0) return bench::mpi_start_probe(argc, argv);
    // Under mpirun, rank 0 measures the mpi figures and the other ranks serve its pools: they do
    // not return from init. A plain run stays without MPI.
    if (bench::started_by_mpirun()) mproc::mpi::init(argc, argv);
#endif
    return bench::run_cli(argc, argv);
}
