#pragma once
// What sharedctypes.hpp's templates check and throw: the compile-time check of a type placed in
// shared memory, and the errors of an index, a size or a decoded block that does not fit.
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace mproc::detail {

template <class T>
consteval bool check_shareable() {
    static_assert(!std::is_pointer_v<T> && !std::is_member_pointer_v<T>,
                  "a pointer in shared memory means nothing in another process: share the data it points to");
    static_assert(std::is_trivially_copyable_v<T>,
                  "shared values need a trivially copyable type: its bytes live in shared memory and are read "
                  "by other processes, so a type that owns memory elsewhere (std::string, std::vector) cannot "
                  "be shared this way");
    static_assert(!std::is_const_v<T> && !std::is_volatile_v<T>, "share a type without const or volatile");
    static_assert(alignof(T) <= 4096, "shared values can be aligned to at most a page (4096 bytes)");
    return true;
}

[[noreturn]] void throw_index_error(std::size_t index, std::size_t size);
[[noreturn]] void throw_array_too_large(std::size_t size, std::size_t element_size);
[[noreturn]] void throw_shared_size_mismatch(std::uint64_t bytes, std::size_t element_size);

}  // namespace mproc::detail
