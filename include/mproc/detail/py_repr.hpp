#pragma once
// Python's repr() of values: the text form of managed dicts and lists (`print(d)` in Python
// prints the referent's repr: {0: 0, 1: 2}, ['a', 'b']) and of ShareableList. The manager server keeps
// values as encoded bytes and cannot print them; the typed proxy decodes and prints them here.
#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace mproc::detail {

template <class T>
struct is_pair_like : std::false_type {};
template <class A, class B>
struct is_pair_like<std::pair<A, B>> : std::true_type {};

template <class T>
struct is_tuple : std::false_type {};
template <class... Ts>
struct is_tuple<std::tuple<Ts...>> : std::true_type {};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

// Python's str repr: single quotes unless the text holds a single quote and no double one.
inline std::string py_repr_string(std::string_view text) {
    const bool doubled = text.find('\'') != std::string_view::npos && text.find('"') == std::string_view::npos;
    const char quote = doubled ? '"' : '\'';
    std::string out(1, quote);
    for (char c : text) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c == quote) {
                    out += '\\';
                    out += c;
                } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
                    out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
                } else {
                    out += c;
                }
        }
    }
    out += quote;
    return out;
}

template <class T>
std::string py_repr(const T& value);

template <class R>
std::string py_repr_sequence(const R& range, const char* open, const char* close) {
    std::string out = open;
    bool first = true;
    for (const auto& element : range) {
        if (!first) out += ", ";
        first = false;
        out += py_repr(element);
    }
    return out + close;
}

template <class R>
std::string py_repr_mapping(const R& range) {
    std::string out = "{";
    bool first = true;
    for (const auto& [key, mapped] : range) {
        if (!first) out += ", ";
        first = false;
        out += py_repr(key) + ": " + py_repr(mapped);
    }
    return out + "}";
}

template <class T>
std::string py_repr(const T& value) {
    if constexpr (std::is_same_v<T, bool>) {
        return value ? "True" : "False";
    } else if constexpr (std::is_same_v<T, char>) {
        return py_repr_string(std::string_view(&value, 1));
    } else if constexpr (std::is_integral_v<T>) {
        return std::to_string(value);
    } else if constexpr (std::is_floating_point_v<T>) {
        // Python writes the shortest text that reads back as the same number, always with a
        // decimal point or an exponent (1.0, not 1).
        std::string text = fmt::format("{}", value);
        if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
        return text;
    } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
        return py_repr_string(std::string_view(value));
    } else if constexpr (is_optional<T>::value) {
        return value ? py_repr(*value) : std::string("None");
    } else if constexpr (is_pair_like<T>::value) {
        return "(" + py_repr(value.first) + ", " + py_repr(value.second) + ")";
    } else if constexpr (is_tuple<T>::value) {
        std::string out = "(";
        std::apply(
            [&out](const auto&... parts) {
                bool first = true;
                ((out += (first ? "" : ", ") + py_repr(parts), first = false), ...);
            },
            value);
        if constexpr (std::tuple_size_v<T> == 1) out += ",";
        return out + ")";
    } else if constexpr (requires { typename T::mapped_type; }) {
        return py_repr_mapping(value);
    } else if constexpr (requires { value.begin(); value.end(); }) {
        return py_repr_sequence(value, "[", "]");
    } else if constexpr (requires(std::ostream& os) { os << value; }) {
        std::ostringstream os;
        os << value;
        return os.str();
    } else {
        return "<object>";
    }
}

}  // namespace mproc::detail
