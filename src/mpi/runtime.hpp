#pragma once
// The MPI runtime of this process (mpi floor): the communicator mproc uses, who we are, and the
// two roles a rank takes after init: rank 0 runs main beside the dispatcher (dispatcher.hpp), every
// other rank serves (serve, server.cpp) and never returns.
#include <mpi.h>

#include <string>

#include "mproc/mpi.hpp"

namespace mproc::mpi::detail {

struct Runtime {
    MPI_Comm comm = MPI_COMM_NULL;  // mproc's own duplicate of MPI_COMM_WORLD
    int rank = 0;
    int size = 1;
    std::string host;
    InitOptions options;
};

// Null before init and in a process that never called it.
Runtime* runtime() noexcept;

// What the serving ranks do from init on; ends the process.
[[noreturn]] void serve(const Runtime& runtime);

// Every loaded object of this process and its build-id, one per line, the program first: what
// must be equal on every rank for code references to mean the same code.
std::string program_fingerprint();

}  // namespace mproc::mpi::detail
