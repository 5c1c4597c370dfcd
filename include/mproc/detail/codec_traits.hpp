#pragma once
// Type classification for the codec (mproc/codec.hpp): which wire form a type takes, whether it
// is supported at all, and the fewest bytes one value of it can occupy on the wire. Everything
// here is compile-time; nothing is public API.
#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <forward_list>
#include <functional>
#include <initializer_list>
#include <limits>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <source_location>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <typeindex>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <cereal/cereal.hpp>

namespace mproc::codec_archive {
class OutputArchive;
class InputArchive;
}  // namespace mproc::codec_archive

// Detection of cereal-style serialization functions. The non-member forms are found by
// argument-dependent lookup only: this namespace declares deleted functions of the same names so
// that ordinary lookup stops here and never picks up an unrelated `serialize` or `load` from an
// enclosing namespace.
namespace mproc::detail::codec_adl {

void serialize() = delete;
void save() = delete;
void load() = delete;
void save_minimal() = delete;
void load_minimal() = delete;

using Out = codec_archive::OutputArchive;
using In = codec_archive::InputArchive;

// serialize(): one function used in both directions, so it must accept both archives.
template <class T>
concept member_serialize = requires(Out& o, In& i, T& t) {
    cereal::access::member_serialize(o, t);
    cereal::access::member_serialize(i, t);
};
template <class T>
concept member_serialize_versioned = requires(Out& o, In& i, T& t, std::uint32_t v) {
    cereal::access::member_serialize(o, t, v);
    cereal::access::member_serialize(i, t, v);
};
template <class T>
concept nonmember_serialize = requires(Out& o, In& i, T& t) {
    serialize(o, t);
    serialize(i, t);
};
template <class T>
concept nonmember_serialize_versioned = requires(Out& o, In& i, T& t, std::uint32_t v) {
    serialize(o, t, v);
    serialize(i, t, v);
};

// save() / load(): one function per direction.
template <class T>
concept member_save = requires(Out& o, const T& t) {
    cereal::access::member_save(o, t);
};
template <class T>
concept member_save_versioned = requires(Out& o, const T& t, std::uint32_t v) {
    cereal::access::member_save(o, t, v);
};
template <class T>
concept nonmember_save = requires(Out& o, const T& t) {
    save(o, t);
};
template <class T>
concept nonmember_save_versioned = requires(Out& o, const T& t, std::uint32_t v) {
    save(o, t, v);
};

template <class T>
concept member_load = requires(In& i, T& t) {
    cereal::access::member_load(i, t);
};
template <class T>
concept member_load_versioned = requires(In& i, T& t, std::uint32_t v) {
    cereal::access::member_load(i, t, v);
};
template <class T>
concept nonmember_load = requires(In& i, T& t) {
    load(i, t);
};
template <class T>
concept nonmember_load_versioned = requires(In& i, T& t, std::uint32_t v) {
    load(i, t, v);
};

// save_minimal() / load_minimal(): the value is represented by one simpler value (a number or a
// string), which is what travels.
template <class T>
concept member_save_minimal = requires(const Out& o, const T& t) {
    cereal::access::member_save_minimal(o, t);
};
template <class T>
concept member_save_minimal_versioned = requires(const Out& o, const T& t, std::uint32_t v) {
    cereal::access::member_save_minimal(o, t, v);
};
template <class T>
concept nonmember_save_minimal = requires(const Out& o, const T& t) {
    save_minimal(o, t);
};
template <class T>
concept nonmember_save_minimal_versioned = requires(const Out& o, const T& t, std::uint32_t v) {
    save_minimal(o, t, v);
};

// Which of the forms above a type provides. cereal accepts exactly one way of serializing a type;
// so does the codec, and anything else is reported at compile time.
enum class Method {
    none,
    member_serialize,
    member_serialize_versioned,
    nonmember_serialize,
    nonmember_serialize_versioned,
    save_load,  // any member/non-member, plain/versioned combination, resolved at the call
    save_load_minimal,
    ambiguous,
    save_without_load,
    load_without_save,
};

template <class T>
consteval int count_serialize() {
    return int{member_serialize<T>} + int{member_serialize_versioned<T>} +
           int{nonmember_serialize<T>} + int{nonmember_serialize_versioned<T>};
}
template <class T>
consteval int count_save() {
    return int{member_save<T>} + int{member_save_versioned<T>} + int{nonmember_save<T>} +
           int{nonmember_save_versioned<T>};
}
template <class T>
consteval int count_load() {
    return int{member_load<T>} + int{member_load_versioned<T>} + int{nonmember_load<T>} +
           int{nonmember_load_versioned<T>};
}
template <class T>
consteval int count_save_minimal() {
    return int{member_save_minimal<T>} + int{member_save_minimal_versioned<T>} +
           int{nonmember_save_minimal<T>} + int{nonmember_save_minimal_versioned<T>};
}

template <class T>
consteval Method method_of() {
    constexpr int serializes = count_serialize<T>();
    constexpr int saves = count_save<T>();
    constexpr int loads = count_load<T>();
    constexpr int minimal_saves = count_save_minimal<T>();
    constexpr int families =
        int{serializes > 0} + int{saves > 0 || loads > 0} + int{minimal_saves > 0};
    if constexpr (families == 0) {
        return Method::none;
    } else if constexpr (families > 1 || serializes > 1 || saves > 1 || loads > 1 ||
                         minimal_saves > 1) {
        return Method::ambiguous;
    } else if constexpr (serializes == 1) {
        if constexpr (member_serialize<T>)
            return Method::member_serialize;
        else if constexpr (member_serialize_versioned<T>)
            return Method::member_serialize_versioned;
        else if constexpr (nonmember_serialize<T>)
            return Method::nonmember_serialize;
        else
            return Method::nonmember_serialize_versioned;
    } else if constexpr (saves == 1 && loads == 0) {
        return Method::save_without_load;
    } else if constexpr (saves == 0 && loads == 1) {
        return Method::load_without_save;
    } else if constexpr (saves == 1) {
        return Method::save_load;
    } else {
        return Method::save_load_minimal;  // load_minimal is checked once its value type is known
    }
}

// The type a save_minimal() returns: what travels in place of T.
template <class T>
consteval auto minimal_type_probe() {
    if constexpr (member_save_minimal<T>) {
        return std::type_identity<std::remove_cvref_t<decltype(cereal::access::member_save_minimal(
            std::declval<const Out&>(), std::declval<const T&>()))>>{};
    } else if constexpr (member_save_minimal_versioned<T>) {
        return std::type_identity<std::remove_cvref_t<decltype(cereal::access::member_save_minimal(
            std::declval<const Out&>(), std::declval<const T&>(), std::uint32_t{}))>>{};
    } else if constexpr (nonmember_save_minimal<T>) {
        return std::type_identity<std::remove_cvref_t<decltype(save_minimal(
            std::declval<const Out&>(), std::declval<const T&>()))>>{};
    } else {
        return std::type_identity<std::remove_cvref_t<decltype(save_minimal(
            std::declval<const Out&>(), std::declval<const T&>(), std::uint32_t{}))>>{};
    }
}
template <class T>
using minimal_type = typename decltype(minimal_type_probe<T>())::type;

template <class T, class V>
concept has_load_minimal = requires(const In& i, T& t, const V& v, std::uint32_t ver) {
    requires(
        requires { cereal::access::member_load_minimal(i, t, v); } ||
        requires { cereal::access::member_load_minimal(i, t, v, ver); } ||
        requires { load_minimal(i, t, v); } || requires { load_minimal(i, t, v, ver); });
};

// The calls themselves live here too, so that they see the same lookup as the detection above.
template <class A, class T>
void call_serialize(A& ar, T& value) {
    serialize(ar, value);
}
template <class A, class T>
void call_serialize(A& ar, T& value, std::uint32_t version) {
    serialize(ar, value, version);
}
template <class T>
void call_save(Out& ar, const T& value, std::uint32_t version) {
    if constexpr (member_save<T>)
        cereal::access::member_save(ar, value);
    else if constexpr (member_save_versioned<T>)
        cereal::access::member_save(ar, value, version);
    else if constexpr (nonmember_save<T>)
        save(ar, value);
    else
        save(ar, value, version);
}
template <class T>
void call_load(In& ar, T& value, std::uint32_t version) {
    if constexpr (member_load<T>)
        cereal::access::member_load(ar, value);
    else if constexpr (member_load_versioned<T>)
        cereal::access::member_load(ar, value, version);
    else if constexpr (nonmember_load<T>)
        load(ar, value);
    else
        load(ar, value, version);
}
template <class T>
auto call_save_minimal(const Out& ar, const T& value, std::uint32_t version) {
    if constexpr (member_save_minimal<T>)
        return cereal::access::member_save_minimal(ar, value);
    else if constexpr (member_save_minimal_versioned<T>)
        return cereal::access::member_save_minimal(ar, value, version);
    else if constexpr (nonmember_save_minimal<T>)
        return save_minimal(ar, value);
    else
        return save_minimal(ar, value, version);
}
template <class T, class V>
void call_load_minimal(const In& ar, T& value, const V& minimal, std::uint32_t version) {
    if constexpr (requires { cereal::access::member_load_minimal(ar, value, minimal); })
        cereal::access::member_load_minimal(ar, value, minimal);
    else if constexpr (requires {
                           cereal::access::member_load_minimal(ar, value, minimal, version);
                       })
        cereal::access::member_load_minimal(ar, value, minimal, version);
    else if constexpr (requires { load_minimal(ar, value, minimal); })
        load_minimal(ar, value, minimal);
    else
        load_minimal(ar, value, minimal, version);
}

// Whether the chosen functions take a version argument; the version then travels with the value.
template <class T>
consteval bool is_versioned() {
    constexpr Method m = method_of<T>();
    if constexpr (m == Method::member_serialize_versioned ||
                  m == Method::nonmember_serialize_versioned) {
        return true;
    } else if constexpr (m == Method::save_load) {
        return member_save_versioned<T> || nonmember_save_versioned<T> ||
               member_load_versioned<T> || nonmember_load_versioned<T>;
    } else if constexpr (m == Method::save_load_minimal) {
        return member_save_minimal_versioned<T> || nonmember_save_minimal_versioned<T>;
    } else {
        return false;
    }
}

}  // namespace mproc::detail::codec_adl

namespace mproc::detail {

template <class T>
inline constexpr bool codec_always_false = false;

template <class T, template <class...> class Template>
inline constexpr bool is_specialization_of = false;
template <template <class...> class Template, class... Args>
inline constexpr bool is_specialization_of<Template<Args...>, Template> = true;

template <class T>
inline constexpr bool is_std_array = false;
template <class E, std::size_t N>
inline constexpr bool is_std_array<std::array<E, N>> = true;

template <class T>
inline constexpr bool is_std_span = false;
template <class E, std::size_t N>
inline constexpr bool is_std_span<std::span<E, N>> = true;

template <class T>
inline constexpr bool is_duration = false;
template <class Rep, class Period>
inline constexpr bool is_duration<std::chrono::duration<Rep, Period>> = true;

template <class T>
inline constexpr bool is_time_point = false;
template <class Clock, class Duration>
inline constexpr bool is_time_point<std::chrono::time_point<Clock, Duration>> = true;

// Sequence containers: a count, then each element in order.
template <class T>
inline constexpr bool is_sequence =
    is_specialization_of<T, std::vector> || is_specialization_of<T, std::deque> ||
    is_specialization_of<T, std::list> || is_specialization_of<T, std::forward_list>;

// Associative containers: a count, then each key (and mapped value) in iteration order.
template <class T>
inline constexpr bool is_map =
    is_specialization_of<T, std::map> || is_specialization_of<T, std::multimap> ||
    is_specialization_of<T, std::unordered_map> || is_specialization_of<T, std::unordered_multimap>;
template <class T>
inline constexpr bool is_set =
    is_specialization_of<T, std::set> || is_specialization_of<T, std::multiset> ||
    is_specialization_of<T, std::unordered_set> || is_specialization_of<T, std::unordered_multiset>;
template <class T>
inline constexpr bool is_multi =
    is_specialization_of<T, std::multimap> || is_specialization_of<T, std::unordered_multimap> ||
    is_specialization_of<T, std::multiset> || is_specialization_of<T, std::unordered_multiset>;

template <class T>
inline constexpr bool is_vector_bool = false;
template <class Alloc>
inline constexpr bool is_vector_bool<std::vector<bool, Alloc>> = true;

template <class T>
inline constexpr bool is_source_location = false;
#if defined(__cpp_lib_source_location)
template <>
inline constexpr bool is_source_location<std::source_location> = true;
#endif

// Standard types that hold an address, or refer to memory of this process: copying their bytes
// to another process would hand it a dangling reference. They are trivially copyable, so without
// this list the plain-copy rule below would accept them.
template <class T>
inline constexpr bool is_reference_like =
    is_specialization_of<T, std::basic_string_view> || is_std_span<T> ||
    is_specialization_of<T, std::reference_wrapper> ||
    is_specialization_of<T, std::initializer_list> || is_source_location<T> ||
    std::is_same_v<T, std::error_code> || std::is_same_v<T, std::error_condition> ||
    std::is_same_v<T, std::type_index>;

// Standard class templates the codec encodes member by member; never copied as plain bytes even
// where the implementation makes them trivially copyable (an optional's engaged flag or a
// variant's index must be validated, not trusted).
template <class T>
inline constexpr bool is_structured_std =
    is_specialization_of<T, std::basic_string> || is_sequence<T> || is_map<T> || is_set<T> ||
    is_specialization_of<T, std::pair> || is_specialization_of<T, std::tuple> ||
    is_specialization_of<T, std::optional> || is_specialization_of<T, std::variant> ||
    is_std_array<T> || is_duration<T> || is_time_point<T>;

template <class T>
concept enum_with_fixed_underlying_type = std::is_enum_v<T> && requires {
    T{std::underlying_type_t<T>{}};
};

template <class T>
consteval bool has_serialization_method() {
    return codec_adl::method_of<T>() != codec_adl::Method::none;
}

// How a type is written. `plain` is the fast path: the object representation, copied as is.
enum class CodecKind {
    unsupported,
    boolean,      // one byte, 0 or 1
    plain,        // sizeof(T) bytes copied as they are
    empty,        // an empty class (std::monostate, tag types): no bytes at all
    bool_enum,    // an enum whose underlying type is bool: as bool
    string,       // std::basic_string: count, then the characters in one copy
    vector_bool,  // count, then the bits packed eight to a byte
    sequence,     // vector/deque/list/forward_list: count, then the elements
    fixed_array,  // std::array / C array of non-plain elements: the elements, no count
    map,          // count, then key and mapped value for each entry
    set,          // count, then each key
    pair,         // first, then second
    tuple,        // each element in order
    optional,     // one byte 0 or 1, then the value if 1
    variant,      // the alternative's index as a varint, then the alternative
    duration,     // as its count (rep), when the rep is not plain
    time_point,   // as its duration since the clock's epoch, when that is not plain
    user,         // through the type's serialize() / save() + load() (cereal conventions)
};

template <class T>
consteval CodecKind codec_kind();

template <class T>
consteval bool is_plain() {
    return codec_kind<T>() == CodecKind::plain;
}

template <class T>
consteval CodecKind codec_kind() {
    using K = CodecKind;
    if constexpr (std::is_const_v<T> || std::is_volatile_v<T> || std::is_reference_v<T> ||
                  std::is_pointer_v<T> || std::is_member_pointer_v<T> ||
                  std::is_null_pointer_v<T> || std::is_function_v<T> || std::is_void_v<T> ||
                  std::is_unbounded_array_v<T> || is_reference_like<T>) {
        return K::unsupported;
    } else if constexpr (std::is_same_v<T, bool>) {
        return K::boolean;
    } else if constexpr (std::is_arithmetic_v<T>) {
        return K::plain;
    } else if constexpr (std::is_enum_v<T>) {
        if constexpr (has_serialization_method<T>())
            return K::user;
        else if constexpr (!enum_with_fixed_underlying_type<T>)
            return K::unsupported;
        else if constexpr (std::is_same_v<std::underlying_type_t<T>, bool>)
            return K::bool_enum;
        else
            return K::plain;
    } else if constexpr (std::is_bounded_array_v<T>) {
        return is_plain<std::remove_extent_t<T>>() ? K::plain : K::fixed_array;
    } else if constexpr (is_std_array<T>) {
        return (std::tuple_size_v<T> > 0 && is_plain<typename T::value_type>()) ? K::plain
                                                                                : K::fixed_array;
    } else if constexpr (is_specialization_of<T, std::basic_string>) {
        return is_plain<typename T::value_type>() ? K::string : K::unsupported;
    } else if constexpr (is_vector_bool<T>) {
        return K::vector_bool;
    } else if constexpr (is_sequence<T>) {
        return K::sequence;
    } else if constexpr (is_map<T>) {
        return K::map;
    } else if constexpr (is_set<T>) {
        return K::set;
    } else if constexpr (is_specialization_of<T, std::pair>) {
        return K::pair;
    } else if constexpr (is_specialization_of<T, std::tuple>) {
        return K::tuple;
    } else if constexpr (is_specialization_of<T, std::optional>) {
        return K::optional;
    } else if constexpr (is_specialization_of<T, std::variant>) {
        return K::variant;
    } else if constexpr (is_duration<T>) {
        return is_plain<typename T::rep>() ? K::plain : K::duration;
    } else if constexpr (is_time_point<T>) {
        return is_plain<typename T::duration>() ? K::plain : K::time_point;
    } else if constexpr (std::is_class_v<T> || std::is_union_v<T>) {
        // A serialization method wins over the plain copy: a type that has one asked for it.
        if constexpr (has_serialization_method<T>())
            return K::user;
        else if constexpr (!std::is_trivially_copyable_v<T> || !std::default_initializable<T> ||
                           !std::is_copy_assignable_v<T>)
            return K::unsupported;
        else if constexpr (std::is_empty_v<T>)
            return K::empty;
        else
            return K::plain;
    } else {
        return K::unsupported;
    }
}

// Whether the codec can both write and read T (recursively, for the types T is made of).
// User types count as supported when they provide one serialization method; what that method
// passes to the archive is checked where the method is instantiated.
template <class T>
consteval bool is_encodable();

template <class Tuple, std::size_t... I>
consteval bool all_elements_encodable(std::index_sequence<I...>) {
    return (is_encodable<std::tuple_element_t<I, Tuple>>() && ...);
}
// A variant is decoded by emplacing the alternative its index names, default-constructed.
template <class Variant, std::size_t... I>
consteval bool all_alternatives_encodable(std::index_sequence<I...>) {
    return ((is_encodable<std::variant_alternative_t<I, Variant>>() &&
             std::default_initializable<std::variant_alternative_t<I, Variant>>)&&...);
}

template <class T>
consteval bool is_encodable() {
    using K = CodecKind;
    constexpr K kind = codec_kind<T>();
    if constexpr (kind == K::unsupported) {
        return false;
    } else if constexpr (kind == K::fixed_array) {
        if constexpr (std::is_array_v<T>)
            return is_encodable<std::remove_extent_t<T>>();
        else
            return is_encodable<typename T::value_type>();
    } else if constexpr (kind == K::sequence || kind == K::set) {
        return is_encodable<typename T::value_type>() &&
               std::default_initializable<typename T::value_type>;
    } else if constexpr (kind == K::map) {
        return is_encodable<typename T::key_type>() && is_encodable<typename T::mapped_type>() &&
               std::default_initializable<typename T::key_type> &&
               std::default_initializable<typename T::mapped_type>;
    } else if constexpr (kind == K::pair || kind == K::tuple) {
        return all_elements_encodable<T>(std::make_index_sequence<std::tuple_size_v<T>>{});
    } else if constexpr (kind == K::optional) {
        return is_encodable<typename T::value_type>() &&
               std::default_initializable<typename T::value_type>;
    } else if constexpr (kind == K::variant) {
        return all_alternatives_encodable<T>(std::make_index_sequence<std::variant_size_v<T>>{});
    } else if constexpr (kind == K::duration) {
        return is_encodable<typename T::rep>();
    } else if constexpr (kind == K::time_point) {
        return is_encodable<typename T::duration>();
    } else if constexpr (kind == K::user) {
        constexpr codec_adl::Method m = codec_adl::method_of<T>();
        if constexpr (m == codec_adl::Method::ambiguous ||
                      m == codec_adl::Method::save_without_load ||
                      m == codec_adl::Method::load_without_save) {
            return false;
        } else if constexpr (m == codec_adl::Method::save_load_minimal) {
            using V = codec_adl::minimal_type<T>;
            return std::default_initializable<T> && is_encodable<V>() &&
                   codec_adl::has_load_minimal<T, V>;
        } else {
            return std::default_initializable<T>;
        }
    } else {
        return true;
    }
}

// Saturating arithmetic for min_encoded_size: a std::array of a billion elements must not wrap.
constexpr std::size_t saturating_add(std::size_t a, std::size_t b) {
    return a > std::numeric_limits<std::size_t>::max() - b ? std::numeric_limits<std::size_t>::max()
                                                           : a + b;
}
constexpr std::size_t saturating_mul(std::size_t a, std::size_t b) {
    return (b != 0 && a > std::numeric_limits<std::size_t>::max() / b)
               ? std::numeric_limits<std::size_t>::max()
               : a * b;
}

template <class T>
consteval std::size_t min_encoded_size();

template <class Variant, std::size_t... I>
consteval std::size_t smallest_alternative_size(std::index_sequence<I...>) {
    return std::min({min_encoded_size<std::variant_alternative_t<I, Variant>>()...});
}
template <class Tuple, std::size_t... I>
consteval std::size_t total_element_size(std::index_sequence<I...>) {
    std::size_t total = 0;
    ((total = saturating_add(total, min_encoded_size<std::tuple_element_t<I, Tuple>>())), ...);
    return total;
}

// The fewest bytes a value of T can take on the wire. The decoder uses it to reject a count
// before allocating: n elements need at least n * min_encoded_size bytes. Zero means "possibly
// nothing" (empty types, empty tuples, user types, whose methods the codec cannot inspect).
template <class T>
consteval std::size_t min_encoded_size() {
    using K = CodecKind;
    constexpr K kind = codec_kind<T>();
    if constexpr (kind == K::boolean || kind == K::bool_enum) {
        return 1;
    } else if constexpr (kind == K::plain) {
        return sizeof(T);
    } else if constexpr (kind == K::string || kind == K::vector_bool || kind == K::sequence ||
                         kind == K::map || kind == K::set || kind == K::optional) {
        return 1;  // the count or the flag
    } else if constexpr (kind == K::variant) {
        return saturating_add(
            1, smallest_alternative_size<T>(std::make_index_sequence<std::variant_size_v<T>>{}));
    } else if constexpr (kind == K::pair || kind == K::tuple) {
        return total_element_size<T>(std::make_index_sequence<std::tuple_size_v<T>>{});
    } else if constexpr (kind == K::fixed_array) {
        if constexpr (std::is_array_v<T>)
            return saturating_mul(std::extent_v<T>, min_encoded_size<std::remove_extent_t<T>>());
        else
            return saturating_mul(std::tuple_size_v<T>, min_encoded_size<typename T::value_type>());
    } else if constexpr (kind == K::duration) {
        return min_encoded_size<typename T::rep>();
    } else if constexpr (kind == K::time_point) {
        return min_encoded_size<typename T::duration>();
    } else {
        return 0;  // empty, user
    }
}

}  // namespace mproc::detail
