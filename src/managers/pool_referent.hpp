#pragma once
// The managed Pool's referent (typeid "Pool"): an mproc::Pool in the server, and the result
// objects ("AsyncResult", "Iterator") its submit calls make for the clients.
#include <memory>

#include "managers/server_state.hpp"

namespace mproc::detail {

// A Pool made with `args` (processes, maxtasksperchild, context, task_timeout in ms, each an
// optional); ValueError as Python's for a bad number of processes.
std::shared_ptr<Referent> make_pool_referent(const Blobs& args);

}  // namespace mproc::detail
