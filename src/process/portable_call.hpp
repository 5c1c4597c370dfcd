#pragma once
// A call handed to a child process as one of its arguments (an initializer: a Pool worker's, a
// manager's server's): under fork the call itself, inherited with the address space; under spawn
// and forkserver its portable encoding (detail/target.hpp), made when the child's arguments are
// encoded, so that the call's own arguments may be objects that travel only that way (a Queue, a
// Connection).
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/target.hpp"

namespace mproc::detail {

struct PortableCall {
    std::shared_ptr<Target> target;    // in the parent, and in a forked child
    std::vector<std::byte> encoded;    // in a spawned child

    // Runs the call (nothing when there is none).
    void operator()() const {
        if (target) return target->invoke();
        if (encoded.empty()) return;
        Decoder in(encoded);
        run_portable_call(in);
    }

    template <class Archive>
    void save(Archive& ar) const {
        std::vector<std::byte> bytes;
        if (target) {
            Encoder out(bytes);
            target->encode_portable(out);
        }
        ar(bytes);
    }
    template <class Archive>
    void load(Archive& ar) {
        ar(encoded);
    }
};

}  // namespace mproc::detail
