#pragma once
// Template definitions for mproc/codec.hpp; included at its end, not on its own.
#include <algorithm>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <utility>

#include "mproc/codec.hpp"
#include "mproc/detail/codec_handover.hpp"

namespace mproc {
namespace detail {

template <class T>
inline constexpr bool is_std_vector = is_specialization_of<T, std::vector>;
template <class T>
inline constexpr bool is_forward_list = is_specialization_of<T, std::forward_list>;
template <class T>
inline constexpr bool is_unordered =
    is_specialization_of<T, std::unordered_map> ||
    is_specialization_of<T, std::unordered_multimap> ||
    is_specialization_of<T, std::unordered_set> || is_specialization_of<T, std::unordered_multiset>;

// Counts one level of user-type nesting for as long as it lives.
class CodecDepth {
public:
    explicit CodecDepth(std::size_t& depth) noexcept : depth_(depth) { ++depth_; }
    ~CodecDepth() { --depth_; }
    CodecDepth(const CodecDepth&) = delete;
    CodecDepth& operator=(const CodecDepth&) = delete;

private:
    std::size_t& depth_;
};

template <class T>
consteval void require_default_constructible() {
    static_assert(std::default_initializable<T>,
                  "mproc codec: values are decoded into a default-constructed object, and this "
                  "type has no (public) default constructor; add one");
}

template <class Tuple, std::size_t... I>
consteval void require_elements_encodable(std::index_sequence<I...>) {
    (require_encodable<std::tuple_element_t<I, Tuple>>(), ...);
}

template <class T>
consteval void require_encodable() {
    using K = CodecKind;
    constexpr K kind = codec_kind<T>();
    if constexpr (is_encodable<T>()) {
        return;
    } else if constexpr (std::is_reference_v<T>) {
        static_assert(codec_always_false<T>,
                      "mproc codec: a reference cannot be encoded; encode the value it refers to");
    } else if constexpr (std::is_const_v<T> || std::is_volatile_v<T>) {
        static_assert(codec_always_false<T>,
                      "mproc codec: a const or volatile type cannot be decoded into; use the "
                      "unqualified type (a std::map<K, V> rather than a vector of "
                      "std::pair<const K, V>, for example)");
    } else if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T> ||
                         std::is_null_pointer_v<T>) {
        static_assert(codec_always_false<T>,
                      "mproc codec: pointers cannot be encoded: an address means nothing in "
                      "another process. Send the value it points to (std::optional for a "
                      "nullable one), or an index into data both processes hold");
    } else if constexpr (is_reference_like<T>) {
        static_assert(codec_always_false<T>,
                      "mproc codec: std::string_view, std::span, std::reference_wrapper, "
                      "std::initializer_list, std::error_code and the like refer to memory of "
                      "this process; send an owning type (std::string, std::vector) instead");
    } else if constexpr (std::is_function_v<T> || std::is_void_v<T> ||
                         std::is_unbounded_array_v<T>) {
        static_assert(codec_always_false<T>,
                      "mproc codec: functions, void and arrays of unknown bound cannot be encoded");
    } else if constexpr (std::is_bounded_array_v<T>) {
        require_encodable<std::remove_extent_t<T>>();
    } else if constexpr (std::is_enum_v<T> && kind == K::unsupported) {
        static_assert(codec_always_false<T>,
                      "mproc codec: an enum without a fixed underlying type cannot be decoded "
                      "safely (a value outside its enumerators' range is undefined behaviour); "
                      "declare it `enum class E` or `enum E : int`, or give it save_minimal() "
                      "and load_minimal() that check the value");
    } else if constexpr (is_specialization_of<T, std::basic_string>) {
        static_assert(codec_always_false<T>,
                      "mproc codec: std::basic_string is supported for trivially copyable "
                      "character types only");
    } else if constexpr (kind == K::fixed_array) {
        require_encodable<typename T::value_type>();
    } else if constexpr (kind == K::sequence || kind == K::set || kind == K::optional) {
        require_encodable<typename T::value_type>();
        require_default_constructible<typename T::value_type>();
    } else if constexpr (kind == K::map) {
        require_encodable<typename T::key_type>();
        require_encodable<typename T::mapped_type>();
        require_default_constructible<typename T::key_type>();
        require_default_constructible<typename T::mapped_type>();
    } else if constexpr (kind == K::pair || kind == K::tuple) {
        require_elements_encodable<T>(std::make_index_sequence<std::tuple_size_v<T>>{});
    } else if constexpr (kind == K::variant) {
        const auto each = []<std::size_t... I>(std::index_sequence<I...>) {
            (require_encodable<std::variant_alternative_t<I, T>>(), ...);
            (require_default_constructible<std::variant_alternative_t<I, T>>(), ...);
        };
        each(std::make_index_sequence<std::variant_size_v<T>>{});
    } else if constexpr (kind == K::duration) {
        require_encodable<typename T::rep>();
    } else if constexpr (kind == K::time_point) {
        require_encodable<typename T::duration>();
    } else if constexpr (kind == K::user) {
        using codec_adl::Method;
        constexpr Method method = codec_adl::method_of<T>();
        static_assert(method != Method::ambiguous,
                      "mproc codec: this type has more than one serialization method (serialize, "
                      "save/load or save_minimal/load_minimal; member or non-member; versioned or "
                      "not). Keep exactly one, as cereal requires");
        static_assert(method != Method::save_without_load,
                      "mproc codec: this type has save() but no matching load(Archive&)");
        static_assert(method != Method::load_without_save,
                      "mproc codec: this type has load() but no matching save(Archive&); save() "
                      "must be a const member function, or take the value by const reference");
        if constexpr (method == Method::save_load_minimal) {
            require_encodable<codec_adl::minimal_type<T>>();
            static_assert(codec_adl::has_load_minimal<T, codec_adl::minimal_type<T>>,
                          "mproc codec: this type has save_minimal() but no matching "
                          "load_minimal(const Archive&, const V&) for the type save_minimal "
                          "returns");
        }
        require_default_constructible<T>();
    } else if constexpr (is_specialization_of<T, std::unique_ptr> ||
                         is_specialization_of<T, std::shared_ptr> ||
                         is_specialization_of<T, std::weak_ptr>) {
        static_assert(codec_always_false<T>,
                      "mproc codec: smart pointers cannot be encoded; send the value itself "
                      "(std::optional<T> for a nullable one, std::vector<T> for children in a "
                      "tree)");
    } else if constexpr (std::is_class_v<T> || std::is_union_v<T>) {
        if constexpr (!std::is_trivially_copyable_v<T>) {
            static_assert(codec_always_false<T>,
                          "mproc codec: this type is not supported: it has no serialize() (or "
                          "save()/load()) and is not trivially copyable. Add `template <class "
                          "Archive> void serialize(Archive& ar) { ar(member1, member2); }` (and "
                          "`friend class cereal::access;` if it is private)");
        } else if constexpr (!std::default_initializable<T>) {
            require_default_constructible<T>();
        } else {
            static_assert(std::is_copy_assignable_v<T>,
                          "mproc codec: a trivially copyable type is decoded by assignment, and "
                          "this one is not assignable (a const or reference member?); give it a "
                          "serialize()");
        }
    } else {
        static_assert(codec_always_false<T>, "mproc codec: this type is not supported");
    }
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Encoder

template <class T>
void Encoder::write(const T& value) {
    if constexpr (Encodable<T>) {
        detail::HandoverTransaction handover;  // a value that fails half-way gives nothing away
        empty_elements_ = 0;
        put(value);
        handover.commit();
    } else {
        detail::require_encodable<T>();
    }
}

inline void Encoder::write_varint(std::uint64_t value) {
    std::byte buffer[10];
    std::size_t n = 0;
    while (value >= 0x80) {
        buffer[n++] = static_cast<std::byte>(static_cast<std::uint8_t>(value) | 0x80);
        value >>= 7;
    }
    buffer[n++] = static_cast<std::byte>(value);
    append(buffer, n);
}

// Grows the buffer and copies, rather than vector::insert: GCC 12 at -O2 reports a bogus
// -Wstringop-overflow for small constant-size inserts into a vector it believes empty, which
// would break users' -Werror builds through this header.
inline void Encoder::append(const std::byte* bytes, std::size_t count) {
    if (count == 0) return;
    const std::size_t old_size = out_->size();
    out_->resize(old_size + count);
    std::memcpy(out_->data() + old_size, bytes, count);
}

template <class T>
void Encoder::put_raw(const T& value) {
    append(reinterpret_cast<const std::byte*>(std::addressof(value)), sizeof(T));
}

template <class T>
void Encoder::put_element(const T& value) {
    if constexpr (detail::min_encoded_size<T>() == 0) {
        const std::size_t before = out_->size();
        put(value);
        if (out_->size() == before && ++empty_elements_ > kCodecMaxEmptyElements)
            detail::codec_encode_too_many_empty_elements(kCodecMaxEmptyElements);
    } else {
        put(value);
    }
}

template <class C>
void Encoder::put_count(const C& container) {
    if constexpr (detail::is_forward_list<C>)
        write_varint(static_cast<std::uint64_t>(std::distance(container.begin(), container.end())));
    else
        write_varint(container.size());
}

template <class T>
void Encoder::put(const T& value) {
    using K = detail::CodecKind;
    constexpr K kind = detail::codec_kind<T>();
    if constexpr (kind == K::boolean) {
        out_->push_back(value ? std::byte{1} : std::byte{0});
    } else if constexpr (kind == K::plain) {
        put_raw(value);
    } else if constexpr (kind == K::empty) {
        // Nothing to write: an empty type has one value.
    } else if constexpr (kind == K::bool_enum) {
        put(static_cast<bool>(static_cast<std::underlying_type_t<T>>(value)));
    } else if constexpr (kind == K::string) {
        write_varint(value.size());
        if (!value.empty()) write_bytes(std::as_bytes(std::span(value.data(), value.size())));
    } else if constexpr (kind == K::vector_bool) {
        write_varint(value.size());
        std::uint8_t byte = 0;
        std::size_t bit = 0;
        for (const bool b : value) {
            byte = static_cast<std::uint8_t>(byte | (std::uint8_t{b} << bit));
            if (++bit == 8) {
                out_->push_back(static_cast<std::byte>(byte));
                byte = 0;
                bit = 0;
            }
        }
        if (bit != 0) out_->push_back(static_cast<std::byte>(byte));
    } else if constexpr (kind == K::sequence) {
        using E = typename T::value_type;
        put_count(value);
        if constexpr (detail::is_std_vector<T> && detail::is_plain<E>()) {
            if (!value.empty()) write_bytes(std::as_bytes(std::span(value.data(), value.size())));
        } else {
            for (const auto& element : value) put_element(element);
        }
    } else if constexpr (kind == K::fixed_array) {
        for (const auto& element : value) put(element);
    } else if constexpr (kind == K::map) {
        constexpr bool may_be_empty = detail::min_encoded_size<typename T::key_type>() == 0 &&
                                      detail::min_encoded_size<typename T::mapped_type>() == 0;
        put_count(value);
        for (const auto& [key, mapped] : value) {
            const std::size_t before = out_->size();
            put(key);
            put(mapped);
            if (may_be_empty && out_->size() == before &&
                ++empty_elements_ > kCodecMaxEmptyElements)
                detail::codec_encode_too_many_empty_elements(kCodecMaxEmptyElements);
        }
    } else if constexpr (kind == K::set) {
        put_count(value);
        for (const auto& key : value) put_element(key);
    } else if constexpr (kind == K::pair) {
        put(value.first);
        put(value.second);
    } else if constexpr (kind == K::tuple) {
        std::apply([&](const auto&... elements) { (put(elements), ...); }, value);
    } else if constexpr (kind == K::optional) {
        if (value.has_value()) {
            out_->push_back(std::byte{1});
            put(*value);
        } else {
            out_->push_back(std::byte{0});
        }
    } else if constexpr (kind == K::variant) {
        if (value.valueless_by_exception()) detail::codec_encode_valueless_variant();
        write_varint(value.index());
        // The alternative by index, not by type: variant<int, int> has two int alternatives.
        const auto put_active = [&]<std::size_t... I>(std::index_sequence<I...>) {
            (void)((value.index() == I ? (put(std::get<I>(value)), true) : false) || ...);
        };
        put_active(std::make_index_sequence<std::variant_size_v<T>>{});
    } else if constexpr (kind == K::duration) {
        put(value.count());
    } else if constexpr (kind == K::time_point) {
        put(value.time_since_epoch());
    } else if constexpr (kind == K::user) {
        put_user(value);
    } else {
        static_assert(detail::codec_always_false<T>, "unreachable: checked by Encodable");
    }
}

template <class T>
void Encoder::put_user(const T& value) {
    namespace adl = detail::codec_adl;
    using adl::Method;
    if (depth_ >= kCodecMaxDepth) detail::codec_encode_too_deep(kCodecMaxDepth);
    detail::CodecDepth level(depth_);

    std::uint32_t version = 0;
    if constexpr (adl::is_versioned<T>()) {
        version = cereal::detail::Version<T>::version;
        write_varint(version);
    }
    codec_archive::OutputArchive archive(*this);
    // cereal hands serialize() a non-const reference in both directions; saving never modifies.
    T& mutable_value = const_cast<T&>(value);
    constexpr Method method = adl::method_of<T>();
    if constexpr (method == Method::member_serialize) {
        cereal::access::member_serialize(archive, mutable_value);
    } else if constexpr (method == Method::member_serialize_versioned) {
        cereal::access::member_serialize(archive, mutable_value, version);
    } else if constexpr (method == Method::nonmember_serialize) {
        adl::call_serialize(archive, mutable_value);
    } else if constexpr (method == Method::nonmember_serialize_versioned) {
        adl::call_serialize(archive, mutable_value, version);
    } else if constexpr (method == Method::save_load) {
        adl::call_save(archive, value, version);
    } else {
        static_assert(method == Method::save_load_minimal);
        const adl::minimal_type<T> minimal =
            adl::call_save_minimal(std::as_const(archive), value, version);
        put(minimal);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder

template <class T>
T Decoder::read() {
    static_assert(!std::is_array_v<T>,
                  "mproc codec: a C array cannot be returned; use read_into(), or std::array");
    if constexpr (Encodable<T>) {
        T value{};
        read_into(value);
        return value;
    } else {
        detail::require_encodable<T>();
        __builtin_unreachable();
    }
}

template <class T>
void Decoder::read_into(T& value) {
    if constexpr (Encodable<T>) {
        empty_elements_ = 0;
        get(value);
    } else {
        detail::require_encodable<T>();
    }
}

inline std::uint64_t Decoder::read_varint() {
    const std::size_t start = pos_;
    std::uint64_t result = 0;
    for (unsigned i = 0;; ++i) {
        if (pos_ == input_.size()) detail::codec_varint_truncated(start);
        const auto byte = static_cast<std::uint8_t>(input_[pos_++]);
        // The tenth byte holds bit 63 only: anything more (or a further byte) exceeds 64 bits.
        if (i == 9 && byte > 1) detail::codec_varint_too_long(start);
        result |= std::uint64_t{byte & 0x7fu} << (7 * i);
        if ((byte & 0x80) == 0) {
            // A final zero group adds nothing: the same number has a shorter encoding. Rejecting
            // it keeps one encoding per value, so equal values give equal bytes.
            if (byte == 0 && i > 0) detail::codec_varint_overlong(start);
            return result;
        }
    }
}

inline std::size_t Decoder::read_count(std::size_t min_element_size) {
    const std::size_t at = pos_;
    const std::uint64_t count = read_varint();
    if (min_element_size != 0 && count > remaining() / min_element_size)
        detail::codec_count_exceeds_input(count, min_element_size, remaining(), at);
    return static_cast<std::size_t>(count);
}

template <class T>
void Decoder::get_raw(T& value) {
    std::memcpy(static_cast<void*>(std::addressof(value)), take(sizeof(T)), sizeof(T));
}

template <class T>
void Decoder::get_element(T& value) {
    if constexpr (detail::min_encoded_size<T>() == 0) {
        const std::size_t before = pos_;
        get(value);
        if (pos_ == before) note_empty_element();
    } else {
        get(value);
    }
}

template <class C>
void Decoder::get_sequence(C& container) {
    using E = typename C::value_type;
    const std::size_t count = read_count(detail::min_encoded_size<E>());
    if constexpr (detail::is_std_vector<C> && detail::is_plain<E>()) {
        // read_count has checked count * sizeof(E) <= remaining(), so this cannot overflow.
        const std::byte* bytes = take(count * sizeof(E));
        container.resize(count);
        if (count != 0) std::memcpy(static_cast<void*>(container.data()), bytes, count * sizeof(E));
    } else {
        container.clear();
        if constexpr (detail::is_std_vector<C>) {
            // Never more memory up front than the input has bytes left: an element may take far
            // more room in memory than on the wire (an empty optional of a large struct).
            container.reserve(std::min(count, remaining() / sizeof(E)));
        }
        if constexpr (detail::is_forward_list<C>) {
            auto last = container.before_begin();
            for (std::size_t i = 0; i < count; ++i) {
                last = container.emplace_after(last);
                get_element(*last);
            }
        } else {
            for (std::size_t i = 0; i < count; ++i) get_element(container.emplace_back());
        }
    }
}

template <class C>
void Decoder::get_associative(C& container) {
    using Key = typename C::key_type;
    constexpr bool is_map = detail::is_map<C>;
    constexpr std::size_t min_entry_size = [] {
        if constexpr (is_map)
            return detail::saturating_add(detail::min_encoded_size<Key>(),
                                          detail::min_encoded_size<typename C::mapped_type>());
        else
            return detail::min_encoded_size<Key>();
    }();
    const std::size_t count = read_count(min_entry_size);
    container.clear();
    if constexpr (detail::is_unordered<C>)
        container.reserve(std::min(count, remaining() / sizeof(void*)));
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t before = pos_;
        Key key{};
        get(key);
        auto insert = [&](auto&&... entry) {
            if constexpr (detail::is_multi<C>) {
                container.emplace_hint(container.end(), std::move(entry)...);
            } else if constexpr (detail::is_unordered<C>) {
                if (!container.emplace(std::move(entry)...).second)
                    detail::codec_duplicate_key(pos_);
            } else {
                const std::size_t size_before = container.size();
                container.emplace_hint(container.end(), std::move(entry)...);
                if (container.size() == size_before) detail::codec_duplicate_key(pos_);
            }
        };
        if constexpr (is_map) {
            typename C::mapped_type mapped{};
            get(mapped);
            insert(std::move(key), std::move(mapped));
        } else {
            insert(std::move(key));
        }
        if (min_entry_size == 0 && pos_ == before) note_empty_element();
    }
}

template <class T>
void Decoder::get(T& value) {
    using K = detail::CodecKind;
    constexpr K kind = detail::codec_kind<T>();
    if constexpr (kind == K::boolean) {
        const std::size_t at = pos_;
        const std::uint8_t byte = take_byte();
        if (byte > 1) detail::codec_invalid_bool(byte, at);
        value = byte != 0;
    } else if constexpr (kind == K::plain) {
        get_raw(value);
    } else if constexpr (kind == K::empty) {
        // Nothing on the wire.
    } else if constexpr (kind == K::bool_enum) {
        bool b = false;
        get(b);
        value = static_cast<T>(b);
    } else if constexpr (kind == K::string) {
        using Char = typename T::value_type;
        const std::size_t count = read_count(sizeof(Char));
        const std::byte* bytes = take(count * sizeof(Char));
        if constexpr (std::is_same_v<Char, char> || std::is_same_v<Char, unsigned char>) {
            value.assign(reinterpret_cast<const Char*>(bytes), count);
        } else {
            // Wider characters may be misaligned in the input: copy bytes, never cast.
            value.resize(count);
            if (count != 0)
                std::memcpy(static_cast<void*>(value.data()), bytes, count * sizeof(Char));
        }
    } else if constexpr (kind == K::vector_bool) {
        const std::uint64_t count = read_varint();
        const std::uint64_t byte_count = count / 8 + (count % 8 != 0 ? 1 : 0);
        if (byte_count > remaining()) detail::codec_truncated(byte_count, pos_, remaining());
        const std::byte* bytes = take(static_cast<std::size_t>(byte_count));
        value.assign(static_cast<std::size_t>(count), false);
        for (std::size_t i = 0; i < count; ++i)
            value[i] = ((static_cast<std::uint8_t>(bytes[i / 8]) >> (i % 8)) & 1u) != 0;
        // Bits past the last element must be zero, so that each vector has one encoding.
        if (count % 8 != 0 && (static_cast<std::uint8_t>(bytes[count / 8]) >> (count % 8)) != 0)
            detail::codec_bit_padding(pos_ - 1);
    } else if constexpr (kind == K::sequence) {
        get_sequence(value);
    } else if constexpr (kind == K::fixed_array) {
        for (auto& element : value) get(element);
    } else if constexpr (kind == K::map || kind == K::set) {
        get_associative(value);
    } else if constexpr (kind == K::pair) {
        get(value.first);
        get(value.second);
    } else if constexpr (kind == K::tuple) {
        std::apply([&](auto&... elements) { (get(elements), ...); }, value);
    } else if constexpr (kind == K::optional) {
        const std::size_t at = pos_;
        const std::uint8_t flag = take_byte();
        if (flag == 0) {
            value.reset();
        } else if (flag == 1) {
            if (!value.has_value()) value.emplace();
            get(*value);
        } else {
            detail::codec_invalid_optional_flag(flag, at);
        }
    } else if constexpr (kind == K::variant) {
        constexpr std::size_t alternatives = std::variant_size_v<T>;
        const std::size_t at = pos_;
        const std::uint64_t index = read_varint();
        if (index >= alternatives) detail::codec_variant_index(index, alternatives, at);
        const auto get_alternative = [&]<std::size_t... I>(std::index_sequence<I...>) {
            (void)((index == I ? (get(value.template emplace<I>()), true) : false) || ...);
        };
        get_alternative(std::make_index_sequence<alternatives>{});
    } else if constexpr (kind == K::duration) {
        typename T::rep count{};
        get(count);
        value = T(count);
    } else if constexpr (kind == K::time_point) {
        typename T::duration since_epoch{};
        get(since_epoch);
        value = T(since_epoch);
    } else if constexpr (kind == K::user) {
        get_user(value);
    } else {
        static_assert(detail::codec_always_false<T>, "unreachable: checked by Encodable");
    }
}

template <class T>
void Decoder::get_user(T& value) {
    namespace adl = detail::codec_adl;
    using adl::Method;
    if (depth_ >= kCodecMaxDepth) detail::codec_too_deep(kCodecMaxDepth, pos_);
    detail::CodecDepth level(depth_);

    std::uint32_t version = 0;
    if constexpr (adl::is_versioned<T>()) {
        const std::size_t at = pos_;
        const std::uint64_t stored = read_varint();
        if (stored > std::numeric_limits<std::uint32_t>::max())
            detail::codec_value_too_large(stored, std::numeric_limits<std::uint32_t>::max(),
                                          "class version", at);
        version = static_cast<std::uint32_t>(stored);
    }
    codec_archive::InputArchive archive(*this);
    constexpr Method method = adl::method_of<T>();
    if constexpr (method == Method::member_serialize) {
        cereal::access::member_serialize(archive, value);
    } else if constexpr (method == Method::member_serialize_versioned) {
        cereal::access::member_serialize(archive, value, version);
    } else if constexpr (method == Method::nonmember_serialize) {
        adl::call_serialize(archive, value);
    } else if constexpr (method == Method::nonmember_serialize_versioned) {
        adl::call_serialize(archive, value, version);
    } else if constexpr (method == Method::save_load) {
        adl::call_load(archive, value, version);
    } else {
        static_assert(method == Method::save_load_minimal);
        adl::minimal_type<T> minimal{};
        get(minimal);
        adl::call_load_minimal(std::as_const(archive), value, std::as_const(minimal), version);
    }
}

// ---------------------------------------------------------------------------------------------
// Archives

namespace codec_archive {

template <class T>
void OutputArchive::save_one(const T& value) {
    if constexpr (is_name_value_pair<T>) {
        save_one(value.value);
    } else if constexpr (is_base_class<T>) {
        using Base = std::remove_pointer_t<decltype(value.base_ptr)>;
        if constexpr (Encodable<Base>)
            encoder_.put(static_cast<const Base&>(*value.base_ptr));
        else
            detail::require_encodable<Base>();
    } else if constexpr (is_size_tag<T>) {
        encoder_.write_varint(static_cast<std::uint64_t>(value.size));
    } else if constexpr (is_binary_data<T>) {
        if (value.size != 0)
            encoder_.write_bytes(
                {static_cast<const std::byte*>(value.data), static_cast<std::size_t>(value.size)});
    } else if constexpr (Encodable<T>) {
        encoder_.put(value);
    } else {
        detail::require_encodable<T>();
    }
}

template <class T>
void InputArchive::load_one(T& value) {
    using U = std::remove_cv_t<T>;
    if constexpr (is_name_value_pair<U>) {
        load_one(value.value);
    } else if constexpr (is_base_class<U>) {
        using Base = std::remove_pointer_t<decltype(value.base_ptr)>;
        if constexpr (!Encodable<Base>) {
            detail::require_encodable<Base>();
        } else if constexpr (detail::is_plain<Base>()) {
            // A base subobject may share its tail padding with the derived class's members:
            // copying sizeof(Base) bytes over it could clobber them. Assignment copies only the
            // base's own members.
            Base base{};
            decoder_.get(base);
            *value.base_ptr = base;
        } else {
            decoder_.get(*value.base_ptr);
        }
    } else if constexpr (is_size_tag<U>) {
        using Size = std::remove_reference_t<decltype(value.size)>;
        static_assert(!std::is_const_v<Size>, "mproc codec: cannot load a size into a const");
        // Whatever the size sizes, each element of it should take at least a byte: a size
        // larger than the input left is corrupt, and is refused before the caller allocates.
        const std::size_t at = decoder_.offset();
        const std::uint64_t size = decoder_.read_varint();
        if (size > decoder_.remaining())
            detail::codec_count_exceeds_input(size, 1, decoder_.remaining(), at);
        if (size > static_cast<std::uint64_t>(std::numeric_limits<Size>::max()))
            detail::codec_value_too_large(
                size, static_cast<std::uint64_t>(std::numeric_limits<Size>::max()), "size", at);
        value.size = static_cast<Size>(size);
    } else if constexpr (is_binary_data<U>) {
        static_assert(!std::is_const_v<std::remove_pointer_t<decltype(value.data)>>,
                      "mproc codec: cereal::binary_data needs a non-const pointer when loading");
        const std::size_t size = static_cast<std::size_t>(value.size);
        const std::byte* bytes = decoder_.take(size);
        if (size != 0) std::memcpy(value.data, bytes, size);
    } else if constexpr (Encodable<T>) {
        decoder_.get(value);
    } else {
        detail::require_encodable<T>();
    }
}

}  // namespace codec_archive
}  // namespace mproc
