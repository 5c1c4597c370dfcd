#include "mproc/detail/descriptors.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "base/descriptor_transfer.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {
namespace {

thread_local std::vector<int>* outgoing = nullptr;
std::vector<int> incoming;  // in a child: what came with its start request

}  // namespace

OutgoingDescriptors::OutgoingDescriptors(std::vector<int>& collected) : previous_(outgoing) { outgoing = &collected; }
OutgoingDescriptors::~OutgoingDescriptors() { outgoing = previous_; }

void set_incoming_descriptors(std::vector<int> fds) { incoming = std::move(fds); }

int attach_descriptor(int fd, const char* what) {
    if (outgoing == nullptr)
        throw UsageError(std::string(what) +
                         " can only be shared with a child process through inheritance: pass it as an argument of "
                         "the Process, not through a queue or a pipe");
    if (fd < 0) throw UsageError(std::string(what) + " has no descriptor to share (is it closed?)");
    outgoing->push_back(fd);
    return static_cast<int>(outgoing->size() - 1);
}

int receive_descriptor(int index) {
    if (index < 0 || static_cast<std::size_t>(index) >= incoming.size())
        throw DecodeError("descriptor " + std::to_string(index) + " did not come with the start request (" +
                          std::to_string(incoming.size()) + " did)");
    // The caller takes the received descriptor itself, not a duplicate: a child that closes the
    // Connection it was given must leave no other copy of the descriptor open, or the other end
    // never sees end of file while the child runs.
    const int fd = std::exchange(incoming[static_cast<std::size_t>(index)], -1);
    if (fd < 0) throw DecodeError("descriptor " + std::to_string(index) + " of the start request was already taken");
    return fd;
}

}  // namespace mproc::detail
