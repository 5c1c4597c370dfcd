#pragma once
// The codec: values to bytes and back, for values that cross processes (pipes, queues, pools).
// It plays the role of Python's pickle, under pickle's names:
//
//   std::vector<std::byte> bytes = mproc::dumps(std::map<std::string, int>{{"a", 1}});
//   auto m = mproc::loads<std::map<std::string, int>>(bytes);
//
// How it differs from pickle, by design:
//  - Typed. The bytes carry no type information and no code: the receiver names the type it
//    expects, and decoding can only ever produce a value of that type. Nothing in the input can
//    make the decoder run a function, pick a class, or allocate beyond what the input can back.
//  - Hostile input is an error, never undefined behaviour (within what the codec can check: see
//    the plain-copy fast path below). Truncated or corrupted bytes throw
//    mproc::DecodeError with a message naming the cause and the offset ("mproc codec: truncated
//    input: need 8 bytes at offset 12, 3 left"). The decoder never reads outside its input, never
//    reserves memory for a count the remaining bytes cannot hold, never loops without consuming
//    input (within the limits below), and rejects bytes left over after the value.
//  - Same program (or same types and ABI) on both ends. Numbers are copied in the machine's
//    native little-endian layout; there is no schema evolution beyond cereal's class versions.
//
// Supported types (the concept mproc::Encodable<T> is true for exactly these):
//  - arithmetic types (bool is checked to be 0 or 1), std::byte, enums with a fixed underlying
//    type (every `enum class`, and `enum E : int {...}`);
//  - std::basic_string (std::string, std::u16string, ...), std::vector (vector<bool> too),
//    std::array, C arrays (as members of user types), std::deque, std::list, std::forward_list;
//  - std::map, std::multimap, std::unordered_map, std::unordered_multimap, std::set,
//    std::multiset, std::unordered_set, std::unordered_multiset (custom comparators, hashes and
//    allocators included; a duplicate key in a non-multi container is a DecodeError);
//  - std::pair, std::tuple, std::optional, std::variant, std::monostate,
//    std::chrono::duration and std::chrono::time_point (as their count);
//  - user types that follow cereal's conventions (below), and trivially copyable types;
//  - any nesting of these. Every element type must be default-constructible: values are decoded
//    into a default-constructed object.
//
// User types, the way cereal users already write them; nothing mproc-specific is needed:
//
//   struct Order {
//       std::string item;
//       int quantity;
//       std::optional<double> limit;
//       template <class Archive> void serialize(Archive& ar) { ar(item, quantity, limit); }
//   };
//
// Accepted: a member or non-member (found by argument-dependent lookup) `serialize`, a `save` +
// `load` pair, a `save_minimal` + `load_minimal` pair, each optionally with cereal's
// `std::uint32_t version` argument (the version of CEREAL_CLASS_VERSION then travels with every
// value). Private members work with `friend class cereal::access;`. Inside them, `ar(...)`,
// `ar & x`, `ar << x` / `ar >> x`, cereal::make_nvp / CEREAL_NVP (the name is dropped),
// cereal::base_class / cereal::virtual_base_class, cereal::make_size_tag and cereal::binary_data
// work as in cereal. A type with such a method always goes through it, even when it is
// trivially copyable. Not supported: pointers and smart pointers, polymorphic loading through a
// base pointer, cereal::specialize, load_and_construct (so types need a default constructor).
//
// The plain-copy fast path: a trivially copyable type with no serialization method is copied as
// its object representation (sizeof(T) bytes), and a std::vector, std::basic_string or std::array
// of such elements is one count plus one copy. The codec cannot see inside such a type, so:
//  - a member that holds an address (a pointer, std::string_view, an iterator) travels as a
//    meaningless number; the standard types that hold one (std::string_view, std::span,
//    std::reference_wrapper, ...) are rejected, members of your own types cannot be detected;
//  - members whose bytes have invalid values (bool other than 0/1, an enum without a fixed
//    underlying type) are not validated, and padding bytes travel as they are. Give such a type a
//    serialize() when its bytes may come from a peer you do not trust.
//
// Limits, enforced on decode (and on encode, so that what encodes also decodes):
//  - kCodecMaxDepth: user-type values nested inside one another (a tree whose node holds a vector
//    of nodes). Only user types can nest without a bound known at compile time, so only they
//    count. Deeper input is a DecodeError; encoding a deeper value is a UsageError.
//  - kCodecMaxEmptyElements: container elements that take no bytes on the wire (std::monostate,
//    empty tuples, user types that write nothing), in total within one top-level value. Every
//    other element consumes input, which bounds the work; these do not, so they are counted.
//
// The wire format, in brief (docs/codec.md has the full table): lengths and counts are unsigned
// LEB128 varints in shortest form; bool and the optional flag are one byte, 0 or 1; plain types
// are their native bytes; containers are a count followed by their elements; a variant is its
// index (varint) followed by the alternative; pairs, tuples, std::array and user types are their
// parts in order with no framing. A value's encoding does not say how long it is: frame it
// (a pipe message, a queue slot) or decode successive values with a Decoder.
//
// Errors: mproc::DecodeError for bytes that do not decode to the requested type;
// mproc::UsageError for values that cannot be encoded (a valueless std::variant, a value past the
// limits above). An exception thrown by a user's own serialize/load passes through unchanged.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <cereal/cereal.hpp>

#include "mproc/detail/codec_archive.hpp"
#include "mproc/detail/codec_errors.hpp"
#include "mproc/detail/codec_traits.hpp"
#include "mproc/errors.hpp"

namespace mproc {

static_assert(std::endian::native == std::endian::little,
              "mproc's codec copies numbers in native byte order and supports little-endian "
              "machines only");
static_assert(sizeof(std::size_t) == 8, "mproc's codec assumes a 64-bit size_t");

// The most user-type values nested inside one another in one encoded value.
inline constexpr std::size_t kCodecMaxDepth = 512;

// The most container elements that take no bytes on the wire, in total, in one top-level value.
inline constexpr std::size_t kCodecMaxEmptyElements = std::size_t{1} << 16;

// True for exactly the types the codec can write and read back (see the list above). Other
// headers constrain on it: `template <Encodable T> class Queue`. For a user type it checks that
// one serialization method exists; what that method passes to the archive is checked when the
// method is instantiated.
template <class T>
concept Encodable = detail::is_encodable<T>();

namespace detail {
template <class T>
consteval void require_encodable();
}  // namespace detail

// True for an Encodable T; for any other T, fails compilation with a message that says why
// (a pointer, a type with no serialize(), an enum without a fixed underlying type, ...),
// descending into containers so that the innermost offending type is the one named. A class
// template that will send its T states the requirement once, with that message:
//
//   template <class T> class Queue {
//       static_assert(mproc::assert_encodable<T>());
//       ...
//
// A `requires Encodable<T>` clause gives the compiler's generic "constraints not satisfied".
template <class T>
consteval bool assert_encodable() {
    detail::require_encodable<T>();
    return true;
}

// Encoder appends encoded values to a byte vector. dumps() and encode_into() are the usual entry
// points; use an Encoder directly to write several values, or raw varints and bytes, into one
// buffer (a message header followed by a payload, say).
class Encoder {
public:
    explicit Encoder(std::vector<std::byte>& out) noexcept : out_(&out) {}

    // Appends the encoding of `value`.
    template <class T>
    void write(const T& value);

    // Appends `value` as an unsigned LEB128 varint (1 to 10 bytes).
    void write_varint(std::uint64_t value);

    // Appends `bytes` as they are, without a length.
    void write_bytes(std::span<const std::byte> bytes) { append(bytes.data(), bytes.size()); }

    std::vector<std::byte>& buffer() const noexcept { return *out_; }

private:
    friend class codec_archive::OutputArchive;

    template <class T>
    void put(const T& value);
    template <class T>
    void put_raw(const T& value);
    template <class T>
    void put_element(const T& value);
    template <class T>
    void put_user(const T& value);
    template <class C>
    void put_count(const C& container);
    void append(const std::byte* bytes, std::size_t count);

    std::vector<std::byte>* out_;
    std::size_t depth_ = 0;
    std::size_t empty_elements_ = 0;
};

// Decoder reads successive values from a byte span, advancing a cursor. loads() is the usual
// entry point; use a Decoder directly for input framed as several values.
//
// After a DecodeError the cursor's position is unspecified and the value being decoded into is
// valid but unspecified: discard both.
class Decoder {
public:
    // The Decoder views `input`, which must outlive it.
    explicit Decoder(std::span<const std::byte> input) noexcept : input_(input) {}
    // Refused: a Decoder over a temporary buffer would read freed memory on its next call.
    explicit Decoder(std::vector<std::byte>&&) = delete;

    // Decodes the next value as a T.
    template <class T>
    T read();

    // Decodes the next value into `value`, replacing its contents (a container keeps its
    // capacity where the standard allows, which saves allocations when reading in a loop).
    template <class T>
    void read_into(T& value);

    // Reads an unsigned LEB128 varint; overlong forms and values past 64 bits are errors.
    std::uint64_t read_varint();

    // Returns the next `count` bytes (a view into the input) and skips them.
    std::span<const std::byte> read_bytes(std::size_t count) {
        const std::byte* p = take(count);
        return {p, count};
    }

    std::size_t offset() const noexcept { return pos_; }
    std::size_t remaining() const noexcept { return input_.size() - pos_; }
    bool at_end() const noexcept { return pos_ == input_.size(); }

    // Throws DecodeError if any input is left: what loads() checks after the value.
    void expect_end() const {
        if (!at_end()) detail::codec_trailing_bytes(remaining(), pos_);
    }

private:
    friend class codec_archive::InputArchive;

    template <class T>
    void get(T& value);
    template <class T>
    void get_raw(T& value);
    template <class T>
    void get_element(T& value);
    template <class T>
    void get_user(T& value);
    template <class C>
    void get_sequence(C& container);
    template <class C>
    void get_associative(C& container);

    // The next n bytes, after checking that they exist.
    const std::byte* take(std::size_t n) {
        if (n > remaining()) detail::codec_truncated(n, pos_, remaining());
        const std::byte* p = input_.data() + pos_;
        pos_ += n;
        return p;
    }

    std::uint8_t take_byte() { return static_cast<std::uint8_t>(*take(1)); }

    // A container's element count, checked against the bytes left: `count` elements of at
    // least `min_element_size` bytes each must fit in what remains.
    std::size_t read_count(std::size_t min_element_size);

    void note_empty_element() {
        if (++empty_elements_ > kCodecMaxEmptyElements)
            detail::codec_too_many_empty_elements(kCodecMaxEmptyElements, pos_);
    }

    std::span<const std::byte> input_;
    std::size_t pos_ = 0;
    std::size_t depth_ = 0;
    std::size_t empty_elements_ = 0;
};

// The archives handed to user types' serialize/save/load functions (detail/codec_archive.hpp).
using codec_archive::InputArchive;
using codec_archive::OutputArchive;

// Appends the encoding of `value` to `out`.
template <class T>
void encode_into(std::vector<std::byte>& out, const T& value) {
    Encoder(out).write(value);
}

// The encoding of `value` (Python: pickle.dumps).
template <class T>
std::vector<std::byte> dumps(const T& value) {
    std::vector<std::byte> out;
    encode_into(out, value);
    return out;
}

// Decodes `bytes` as one T; bytes left over after the value are an error (Python: pickle.loads).
template <class T>
T loads(std::span<const std::byte> bytes) {
    Decoder decoder(bytes);
    T value = decoder.read<T>();
    decoder.expect_end();
    return value;
}

}  // namespace mproc

#include "mproc/detail/codec_impl.hpp"
