#pragma once
// The message framing of Python's multiprocessing.connection on POSIX, as pure functions so
// that the blocking reader, the handshake and the fuzz targets share one definition.
//
//   length <= 0x7fffffff:  int32 big-endian length, payload
//   length >  0x7fffffff:  int32 -1, uint64 big-endian length, payload
//
// Python's reader accepts the long form for any length; so does mproc's. Python reads any other
// negative length as an empty message, which desynchronises the stream; mproc rejects it.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>

namespace mproc::transport {

inline constexpr std::size_t kShortHeaderSize = 4;
inline constexpr std::size_t kLongLengthSize = 8;
inline constexpr std::size_t kMaxHeaderSize = kShortHeaderSize + kLongLengthSize;
inline constexpr std::uint64_t kMaxShortLength = 0x7fffffff;
inline constexpr std::int32_t kLongFormMarker = -1;

struct FrameHeader {
    std::array<std::byte, kMaxHeaderSize> bytes{};
    std::size_t size = 0;

    std::span<const std::byte> view() const noexcept { return {bytes.data(), size}; }
};

// The header for a payload of `length` bytes, in the form Python's sender uses.
constexpr FrameHeader encode_frame_header(std::uint64_t length) noexcept {
    FrameHeader header;
    auto put_be = [&header](std::uint64_t value, std::size_t offset, std::size_t width) {
        for (std::size_t i = 0; i < width; ++i)
            header.bytes[offset + i] = static_cast<std::byte>(value >> (8 * (width - 1 - i)));
    };
    if (length <= kMaxShortLength) {
        put_be(length, 0, kShortHeaderSize);
        header.size = kShortHeaderSize;
    } else {
        put_be(static_cast<std::uint32_t>(kLongFormMarker), 0, kShortHeaderSize);
        put_be(length, kShortHeaderSize, kLongLengthSize);
        header.size = kMaxHeaderSize;
    }
    return header;
}

// What the first four bytes of a frame say.
struct ShortLength {
    std::uint64_t length;
};
struct LongFormFollows {};
struct NegativeLength {
    std::int32_t value;
};
using FirstWord = std::variant<ShortLength, LongFormFollows, NegativeLength>;

constexpr FirstWord decode_first_word(std::span<const std::byte, kShortHeaderSize> bytes) noexcept {
    std::uint32_t raw = 0;
    for (std::byte b : bytes) raw = (raw << 8) | static_cast<std::uint8_t>(b);
    const auto value = static_cast<std::int32_t>(raw);
    if (value >= 0) return ShortLength{static_cast<std::uint64_t>(value)};
    if (value == kLongFormMarker) return LongFormFollows{};
    return NegativeLength{value};
}

constexpr std::uint64_t decode_long_length(std::span<const std::byte, kLongLengthSize> bytes) noexcept {
    std::uint64_t value = 0;
    for (std::byte b : bytes) value = (value << 8) | static_cast<std::uint8_t>(b);
    return value;
}

}  // namespace mproc::transport
