#pragma once
// The shared buffers' part of sweep_shared_memory() (shared_buffer.hpp): removes the buffers of
// /dev/shm that nobody keeps any more; returns how many.
namespace mproc::detail {

int sweep_shared_buffers();

}  // namespace mproc::detail
