#pragma once
// Descriptors that travel with a child's start request, for objects that own one (a Connection,
// the shared memory behind a Lock or a Value) and are handed to a child as a Process argument.
//
// Under fork such objects are inherited with the address space. Under spawn and forkserver the
// start request is encoded with the codec, and a DescriptorRef member takes the descriptor out of
// band: the parent sends it with the request (SCM_RIGHTS) and the child receives its own copy.
// Anywhere else (a queue, a pipe) encoding one is a UsageError, as Python refuses to pickle a Lock
// except while spawning a child: a descriptor number means nothing in another process.
#include <string>

namespace mproc::detail {

// The index under which `fd` travels with the start request being encoded on this thread.
// `what` names the object for the error raised outside a start request.
int attach_descriptor(int fd, const char* what);

// In a child: the descriptor (close-on-exec) received at `index`, now owned by the caller; each
// index can be taken once. DecodeError for an index that did not come with the request or was
// already taken.
int receive_descriptor(int index);

// A descriptor as a codec value: the owner encodes `DescriptorRef{fd, "a Lock"}` and decodes a
// DescriptorRef whose fd it then owns.
struct DescriptorRef {
    int fd = -1;
    const char* what = "this object";

    template <class Archive>
    void save(Archive& ar) const {
        ar(attach_descriptor(fd, what));
    }
    template <class Archive>
    void load(Archive& ar) {
        int index = -1;
        ar(index);
        fd = receive_descriptor(index);
    }
};

}  // namespace mproc::detail
