// The raw side of mpi.start: the least an MPI program does, so that `mpirun -np 3 mpi_trivial`
// is the launcher's own cost.
#include <mpi.h>

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    MPI_Finalize();
    return 0;
}
