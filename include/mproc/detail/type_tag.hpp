#pragma once
// A type's name and a 64-bit tag derived from it, at compile time, for channels that carry
// encoded values and must tell a value of one type from another (a Queue's messages): the codec's
// bytes carry no type, so the tag travels beside them and is checked before decoding.
//
// The name is the one the compiler prints in __PRETTY_FUNCTION__, which is the same for the same
// type in every process running the same program (the codec's assumption as well).
#include <cstdint>
#include <string_view>

namespace mproc::detail {

template <class T>
constexpr std::string_view type_name() noexcept {
    constexpr std::string_view whole = __PRETTY_FUNCTION__;
    // GCC: "... type_name() [with T = int; ...]"; Clang: "... type_name() [T = int]".
    constexpr std::string_view gcc_key = "T = ";
    constexpr auto start = whole.find(gcc_key) + gcc_key.size();
    constexpr auto stop = whole.find_first_of(";]", start);
    return whole.substr(start, stop - start);
}

constexpr std::uint64_t fnv1a64(std::string_view text) noexcept {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (char c : text) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

struct TypeTag {
    std::uint64_t hash;
    std::string_view name;
};

template <class T>
constexpr TypeTag type_tag() noexcept {
    return {fnv1a64(type_name<T>()), type_name<T>()};
}

}  // namespace mproc::detail
