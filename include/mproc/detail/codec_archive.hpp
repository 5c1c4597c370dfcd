#pragma once
// The archives codec.hpp hands to user types' serialize/save/load functions, and the cereal
// wrappers they recognise. Their members are defined in detail/codec_impl.hpp.
#include <type_traits>

#include <cereal/cereal.hpp>

namespace mproc {

class Encoder;
class Decoder;

// The archives handed to user types' serialize/save/load functions. User code never constructs
// them; it receives them as its `Archive` template argument and calls `ar(members...)`. They
// live in their own namespace so that argument-dependent lookup of a user's non-member
// `serialize(ar, value)` sees only the user's namespaces.
namespace codec_archive {

template <class T>
inline constexpr bool is_name_value_pair = false;
template <class T>
inline constexpr bool is_name_value_pair<cereal::NameValuePair<T>> = true;

template <class T>
inline constexpr bool is_base_class = false;
template <class B>
inline constexpr bool is_base_class<cereal::base_class<B>> = true;
template <class B>
inline constexpr bool is_base_class<cereal::virtual_base_class<B>> = true;

template <class T>
inline constexpr bool is_size_tag = false;
template <class T>
inline constexpr bool is_size_tag<cereal::SizeTag<T>> = true;

template <class T>
inline constexpr bool is_binary_data = false;
template <class T>
inline constexpr bool is_binary_data<cereal::BinaryData<T>> = true;

class OutputArchive {
public:
    using is_loading = std::false_type;
    using is_saving = std::true_type;

    OutputArchive(const OutputArchive&) = delete;
    OutputArchive& operator=(const OutputArchive&) = delete;

    template <class... Ts>
    OutputArchive& operator()(Ts&&... values) {
        (save_one(values), ...);
        return *this;
    }
    template <class T>
    OutputArchive& operator<<(T&& value) {
        save_one(value);
        return *this;
    }
    template <class T>
    OutputArchive& operator&(T&& value) {
        save_one(value);
        return *this;
    }

private:
    friend class mproc::Encoder;
    explicit OutputArchive(Encoder& encoder) noexcept : encoder_(encoder) {}

    template <class T>
    void save_one(const T& value);

    Encoder& encoder_;
};

class InputArchive {
public:
    using is_loading = std::true_type;
    using is_saving = std::false_type;

    InputArchive(const InputArchive&) = delete;
    InputArchive& operator=(const InputArchive&) = delete;

    template <class... Ts>
    InputArchive& operator()(Ts&&... values) {
        (load_one(values), ...);
        return *this;
    }
    template <class T>
    InputArchive& operator>>(T&& value) {
        load_one(value);
        return *this;
    }
    template <class T>
    InputArchive& operator&(T&& value) {
        load_one(value);
        return *this;
    }

private:
    friend class mproc::Decoder;
    explicit InputArchive(Decoder& decoder) noexcept : decoder_(decoder) {}

    template <class T>
    void load_one(T& value);

    Decoder& decoder_;
};

}  // namespace codec_archive

}  // namespace mproc
