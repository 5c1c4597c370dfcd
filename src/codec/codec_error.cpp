// The codec's error messages (see mproc/detail/codec_errors.hpp). Every message starts with
// "mproc codec: " so that a failure surfacing far from the decode call (a queue, a pool result)
// still says which layer rejected the bytes.
#include "mproc/detail/codec_errors.hpp"

#include <fmt/format.h>

#include <string>

#include "mproc/errors.hpp"

namespace mproc::detail {
namespace {

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
    throw DecodeError("mproc codec: " + fmt::format(format, std::forward<Args>(args)...));
}

template <class... Args>
[[noreturn]] void refuse(fmt::format_string<Args...> format, Args&&... args) {
    throw UsageError("mproc codec: " + fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace

void codec_truncated(std::size_t needed, std::size_t offset, std::size_t left) {
    fail("truncated input: need {} bytes at offset {}, {} left", needed, offset, left);
}

void codec_trailing_bytes(std::size_t count, std::size_t offset) {
    fail("{} trailing {} after the value (at offset {})", count, count == 1 ? "byte" : "bytes",
         offset);
}

void codec_varint_truncated(std::size_t offset) {
    fail("truncated input: varint at offset {} runs past the end", offset);
}

void codec_varint_too_long(std::size_t offset) {
    fail("varint at offset {} is longer than 64 bits", offset);
}

void codec_varint_overlong(std::size_t offset) {
    fail("overlong varint at offset {} (not in its shortest form)", offset);
}

void codec_invalid_bool(std::uint8_t byte, std::size_t offset) {
    fail("invalid bool byte 0x{:02x} at offset {}", byte, offset);
}

void codec_invalid_optional_flag(std::uint8_t byte, std::size_t offset) {
    fail("invalid optional flag byte 0x{:02x} at offset {}", byte, offset);
}

void codec_variant_index(std::uint64_t index, std::size_t alternatives, std::size_t offset) {
    fail("variant index {} out of range ({} alternatives) at offset {}", index, alternatives,
         offset);
}

void codec_count_exceeds_input(std::uint64_t count, std::size_t min_element_size, std::size_t left,
                               std::size_t offset) {
    if (min_element_size == 1) {
        fail("element count {} exceeds the {} bytes left (count at offset {})", count, left,
             offset);
    }
    fail(
        "element count {} exceeds the {} bytes left (each element takes at least {} bytes; "
        "count at offset {})",
        count, left, min_element_size, offset);
}

void codec_bit_padding(std::size_t offset) {
    fail("vector<bool> padding bits are not zero in the byte at offset {}", offset);
}

void codec_duplicate_key(std::size_t offset) {
    fail("duplicate key in a map or set (entry ending at offset {})", offset);
}

void codec_too_deep(std::size_t limit, std::size_t offset) {
    fail("nesting deeper than {} levels at offset {}", limit, offset);
}

void codec_too_many_empty_elements(std::size_t limit, std::size_t offset) {
    fail("more than {} elements that take no bytes in one value (at offset {})", limit, offset);
}

void codec_value_too_large(std::uint64_t value, std::uint64_t max, const char* what,
                           std::size_t offset) {
    fail("{} {} at offset {} exceeds its maximum {}", what, value, offset, max);
}

void codec_encode_too_deep(std::size_t limit) {
    refuse("value nests user types deeper than {} levels; the decoder would reject it", limit);
}

void codec_encode_too_many_empty_elements(std::size_t limit) {
    refuse("value holds more than {} elements that take no bytes; the decoder would reject it",
           limit);
}

void codec_encode_valueless_variant() {
    refuse("cannot encode a std::variant that is valueless_by_exception");
}

void codec_encode_value_too_large(std::uint64_t value, std::uint64_t max, const char* what) {
    refuse("{} {} exceeds its maximum {}", what, value, max);
}

}  // namespace mproc::detail
