#pragma once
// What mproc_bench's main needs of the MPI figures (mpi_figures.cpp, built with MPI only).

namespace bench {

// The program was started by mpirun (Open MPI's or a PMIx launcher's environment is set).
bool started_by_mpirun();

// The program's `--mpi-start-probe` mode, which the mproc side of mpi.start runs under mpirun:
// MPI up on every rank and an mpi::Pool made on rank 0, then the end. Returns main's status.
int mpi_start_probe(int argc, char** argv);

}  // namespace bench
