#include "mproc/sharedctypes.hpp"

#include <string>

#include "mproc/errors.hpp"

namespace mproc::detail {

void throw_index_error(std::size_t index, std::size_t size) {
    throw UsageError("invalid index " + std::to_string(index) + " (the array has " + std::to_string(size) +
                     " elements)");
}

void throw_array_too_large(std::size_t size, std::size_t element_size) {
    throw OSError("allocating a shared array of " + std::to_string(size) + " elements of " +
                      std::to_string(element_size) + " bytes",
                  ENOMEM);
}

void throw_shared_size_mismatch(std::uint64_t bytes, std::size_t element_size) {
    throw DecodeError("shared memory: a received block of " + std::to_string(bytes) +
                      " bytes does not hold values of " + std::to_string(element_size) + " bytes");
}

}  // namespace mproc::detail
