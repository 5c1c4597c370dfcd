#pragma once
// The one place the mpi floor talks to MPI for its messages: non-blocking sends whose buffers it
// keeps until MPI is done with them, and matched probes for what has arrived. Nothing here
// blocks, so a rank that dies never wedges the caller; a lost rank's sends are dropped. Several
// threads may send (MPI runs in MPI_THREAD_MULTIPLE); one receives.
#include <mpi.h>

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "base/deadline.hpp"

namespace mproc::mpi::detail {

class Messenger {
public:
    explicit Messenger(MPI_Comm comm) : comm_(comm) {}
    Messenger(const Messenger&) = delete;
    Messenger& operator=(const Messenger&) = delete;
    ~Messenger();

    void send(int rank, int tag, std::vector<std::byte> bytes);

    struct Received {
        int source = 0;
        std::unique_ptr<std::byte[]> data;  // not zeroed first: MPI writes every byte
        std::size_t size = 0;
        std::span<const std::byte> bytes() const noexcept { return {data.get(), size}; }
    };
    // The next message on `tag` from `source` (MPI_ANY_SOURCE for any), if one has arrived.
    std::optional<Received> receive(int source, int tag);

    // Completes the sends MPI has finished with; true when none is left.
    bool progress();
    // Drops what is still being sent to `rank` (it is gone).
    void forget(int rank);
    // Completes the sends, polling, until none is left or the deadline passes; true when done.
    bool drain(const ::mproc::detail::Deadline& deadline);

private:
    struct Send {
        int rank;
        MPI_Request request;
        std::vector<std::byte> bytes;
    };
    MPI_Comm comm_;
    std::mutex mutex_;  // the sends in progress
    std::list<Send> sends_;
    std::vector<std::vector<std::byte>> abandoned_;  // buffers of cancelled sends MPI may still read
};

}  // namespace mproc::mpi::detail
