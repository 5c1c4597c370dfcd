#pragma once
// The codec's error reports (mproc/codec.hpp). Out of line (src/codec/codec_error.cpp) so that
// the templates that detect a problem stay small: each throws mproc::DecodeError, or
// mproc::UsageError for a value that cannot be encoded, with a message naming the cause and the
// offset in the input where it was found.
#include <cstddef>
#include <cstdint>

namespace mproc::detail {

// Decoding.
[[noreturn]] void codec_truncated(std::size_t needed, std::size_t offset, std::size_t left);
[[noreturn]] void codec_trailing_bytes(std::size_t count, std::size_t offset);
[[noreturn]] void codec_varint_truncated(std::size_t offset);
[[noreturn]] void codec_varint_too_long(std::size_t offset);
[[noreturn]] void codec_varint_overlong(std::size_t offset);
[[noreturn]] void codec_invalid_bool(std::uint8_t byte, std::size_t offset);
[[noreturn]] void codec_invalid_optional_flag(std::uint8_t byte, std::size_t offset);
[[noreturn]] void codec_variant_index(std::uint64_t index, std::size_t alternatives,
                                      std::size_t offset);
[[noreturn]] void codec_count_exceeds_input(std::uint64_t count, std::size_t min_element_size,
                                            std::size_t left, std::size_t offset);
[[noreturn]] void codec_bit_padding(std::size_t offset);
[[noreturn]] void codec_duplicate_key(std::size_t offset);
[[noreturn]] void codec_too_deep(std::size_t limit, std::size_t offset);
[[noreturn]] void codec_too_many_empty_elements(std::size_t limit, std::size_t offset);
[[noreturn]] void codec_value_too_large(std::uint64_t value, std::uint64_t max, const char* what,
                                        std::size_t offset);

// Encoding.
[[noreturn]] void codec_encode_too_deep(std::size_t limit);
[[noreturn]] void codec_encode_too_many_empty_elements(std::size_t limit);
[[noreturn]] void codec_encode_valueless_variant();
[[noreturn]] void codec_encode_value_too_large(std::uint64_t value, std::uint64_t max,
                                               const char* what);

}  // namespace mproc::detail
