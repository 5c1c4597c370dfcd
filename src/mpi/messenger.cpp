#include "mpi/messenger.hpp"

#include <sched.h>

#include <climits>
#include <string>

#include "mproc/errors.hpp"

namespace mproc::mpi::detail {
namespace {
void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(rc, text, &length);
    throw ProcessError(std::string("MPI ") + what + " failed: " + std::string(text, static_cast<std::size_t>(length)));
}
}  // namespace

Messenger::~Messenger() {
    for (auto& send : sends_) {
        if (send.request == MPI_REQUEST_NULL) continue;
        MPI_Cancel(&send.request);
        MPI_Request_free(&send.request);
    }
}

void Messenger::send(int rank, int tag, std::vector<std::byte> bytes) {
    if (bytes.size() > static_cast<std::size_t>(INT_MAX))
        throw ProcessError("MPI message of " + std::to_string(bytes.size()) + " bytes is over MPI's limit of 2 GiB");
    std::lock_guard lock(mutex_);
    auto& send = sends_.emplace_back(Send{rank, MPI_REQUEST_NULL, std::move(bytes)});
    const int rc = MPI_Isend(send.bytes.data(), static_cast<int>(send.bytes.size()), MPI_BYTE, rank, tag, comm_,
                             &send.request);
    if (rc != MPI_SUCCESS) {
        sends_.pop_back();
        check(rc, "send");
    }
}

std::optional<Messenger::Received> Messenger::receive(int source, int tag) {
    int arrived = 0;
    MPI_Message matched;
    MPI_Status status;
    check(MPI_Improbe(source, tag, comm_, &arrived, &matched, &status), "probe");
    if (!arrived) return std::nullopt;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    Received received;
    received.source = status.MPI_SOURCE;
    received.size = static_cast<std::size_t>(count);
    received.data.reset(new std::byte[received.size > 0 ? received.size : 1]);
    check(MPI_Mrecv(received.data.get(), count, MPI_BYTE, &matched, MPI_STATUS_IGNORE), "receive");
    return received;
}

bool Messenger::progress() {
    std::lock_guard lock(mutex_);
    for (auto it = sends_.begin(); it != sends_.end();) {
        int done = 0;
        MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
        it = done ? sends_.erase(it) : std::next(it);
    }
    return sends_.empty();
}

void Messenger::forget(int rank) {
    std::lock_guard lock(mutex_);
    for (auto it = sends_.begin(); it != sends_.end();) {
        if (it->rank != rank) {
            ++it;
            continue;
        }
        // A send to a dead rank may never complete; its buffer must outlive MPI's use of it, so it
        // is cancelled and, when MPI cannot say it is done with it, deliberately kept.
        MPI_Cancel(&it->request);
        int done = 0;
        MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
        if (done) {
            it = sends_.erase(it);
        } else {
            MPI_Request_free(&it->request);
            abandoned_.push_back(std::move(it->bytes));
            it = sends_.erase(it);
        }
    }
}

bool Messenger::drain(const ::mproc::detail::Deadline& deadline) {
    while (!progress()) {
        if (deadline.passed()) return false;
        sched_yield();
    }
    return true;
}

}  // namespace mproc::mpi::detail
