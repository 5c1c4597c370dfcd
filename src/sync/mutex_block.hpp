#pragma once
// The MutexState a Lock's or an RLock's shared block holds (base/mutex_state.hpp has the state and
// the operations on it; this is where the sync floor finds it in a block).
#include "base/mutex_state.hpp"
#include "mproc/detail/shared_block.hpp"

namespace mproc::detail {

MutexState* mutex_state(const SharedBlock& block);

}  // namespace mproc::detail
