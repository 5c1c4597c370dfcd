#pragma once
// The launcher's side of detail/descriptors.hpp: collecting the descriptors of a start request
// while it is encoded, and making the received ones available in the child.
#include <vector>

namespace mproc::detail {

// While alive, attach_descriptor() on this thread adds to `collected`.
class OutgoingDescriptors {
public:
    explicit OutgoingDescriptors(std::vector<int>& collected);
    ~OutgoingDescriptors();
    OutgoingDescriptors(const OutgoingDescriptors&) = delete;
    OutgoingDescriptors& operator=(const OutgoingDescriptors&) = delete;

private:
    std::vector<int>* previous_;
};

// In a child: the descriptors received with the start request, in order.
void set_incoming_descriptors(std::vector<int> fds);

}  // namespace mproc::detail
