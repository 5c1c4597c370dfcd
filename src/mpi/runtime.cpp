// mproc::mpi::init: MPI up, the build-id check, and each rank to its role.
#include "mpi/runtime.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "mpi/dispatcher.hpp"

namespace mproc::mpi {
namespace detail {
namespace {

Runtime* g_runtime = nullptr;

std::string host_name() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0) return "unknown host";
    return name;
}

// The first line where two fingerprints differ, as "object: this vs that".
std::string first_difference(const std::string& ours, const std::string& theirs) {
    std::istringstream a(ours), b(theirs);
    std::string line_a, line_b;
    for (;;) {
        const bool more_a = static_cast<bool>(std::getline(a, line_a));
        const bool more_b = static_cast<bool>(std::getline(b, line_b));
        if (!more_a && !more_b) return "the same objects in another order";
        if (!more_a) return fmt::format("it loads {} which rank 0 does not", line_b);
        if (!more_b) return fmt::format("rank 0 loads {} which it does not", line_a);
        if (line_a != line_b) return fmt::format("rank 0 has {}, it has {}", line_a, line_b);
    }
}

// Every rank sends its fingerprint and host to rank 0, which compares; all learn the verdict.
// Returns rank 0's error message, empty when every rank runs the same program.
std::string check_same_program(MPI_Comm comm, int rank, int size, const std::string& fingerprint, const std::string& host) {
    const std::string mine = fingerprint + "@" + host;
    const int length = static_cast<int>(mine.size());
    std::vector<int> lengths(rank == 0 ? size : 0);
    MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, comm);
    std::vector<int> offsets(lengths.size());
    std::string all;
    if (rank == 0) {
        int total = 0;
        for (int r = 0; r < size; ++r) {
            offsets[r] = total;
            total += lengths[r];
        }
        all.resize(static_cast<std::size_t>(total));
    }
    MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0, comm);
    std::string error;
    if (rank == 0) {
        const std::string ours = mine.substr(0, mine.rfind('@'));
        for (int r = 1; r < size; ++r) {
            const std::string theirs_at = all.substr(static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(lengths[r]));
            const auto at = theirs_at.rfind('@');
            const std::string theirs = theirs_at.substr(0, at);
            if (theirs == ours) continue;
            error += fmt::format("\n  rank {} on {}: {}", r, theirs_at.substr(at + 1), first_difference(ours, theirs));
        }
        if (!error.empty())
            error = "mproc::mpi::init: the ranks do not run the same program (every rank must run the same build of "
                    "the program and its shared objects):" + error;
    }
    int mismatch = error.empty() ? 0 : 1;
    MPI_Bcast(&mismatch, 1, MPI_INT, 0, comm);
    if (rank != 0 && mismatch) error = "mismatch";
    return error;
}

void finish_at_exit() {
    // Rank 0's program ends: the serving ranks are told to exit, and MPI ends with them.
    stop_dispatcher();
}

}  // namespace

Runtime* runtime() noexcept { return g_runtime; }

}  // namespace detail

void init(int& argc, char**& argv, InitOptions options) {
    if (detail::g_runtime != nullptr) throw UsageError("mproc::mpi::init was already called");
    if (options.heartbeat_interval <= std::chrono::milliseconds::zero() ||
        options.heartbeat_timeout <= options.heartbeat_interval)
        throw UsageError("mproc::mpi::init: heartbeat_timeout must be longer than a positive heartbeat_interval");
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) throw UsageError("mproc::mpi::init must initialize MPI itself: call it instead of MPI_Init");
    // The fingerprint is taken before MPI loads its plug-ins, which differ with the transports.
    const std::string host = detail::host_name();
    const std::string fingerprint = detail::program_fingerprint();
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        throw ProcessError("mproc::mpi::init: MPI_Init_thread failed");
    auto* rt = new detail::Runtime;
    rt->options = options;
    rt->host = host;
    MPI_Comm_dup(MPI_COMM_WORLD, &rt->comm);
    MPI_Comm_set_errhandler(rt->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(rt->comm, &rt->rank);
    MPI_Comm_size(rt->comm, &rt->size);
    if (provided < MPI_THREAD_SERIALIZED) {
        MPI_Finalize();
        throw ProcessError("mproc::mpi::init: this MPI library does not allow calls from several threads "
                           "(MPI_THREAD_SERIALIZED), which the pool's dispatcher needs");
    }
    const std::string mismatch = detail::check_same_program(rt->comm, rt->rank, rt->size, fingerprint, rt->host);
    if (!mismatch.empty()) {
        MPI_Finalize();
        if (rt->rank != 0) std::_Exit(1);
        throw MismatchError(mismatch);
    }
    detail::g_runtime = rt;
    if (rt->rank != 0) detail::serve(*rt);
    if (rt->size == 1) {
        std::fputs("mproc::mpi: one rank only (started without mpirun?): an mpi::Pool runs its tasks in a local Pool "
                   "on this machine\n", stderr);
        std::atexit([] { MPI_Finalize(); });
        return;
    }
    detail::start_dispatcher(*rt);
    std::atexit(detail::finish_at_exit);
}

int rank() noexcept { return detail::g_runtime ? detail::g_runtime->rank : 0; }
int size() noexcept { return detail::g_runtime ? detail::g_runtime->size : 1; }
std::string host() { return detail::g_runtime ? detail::g_runtime->host : detail::host_name(); }

}  // namespace mproc::mpi
