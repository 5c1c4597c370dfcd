#pragma once
// What managers.hpp's templates and the manager server share: argument encoding, the type-erased
// entry points of a registered user type, the token a proxy travels as, a dict iteration's step.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

using Blob = std::vector<std::byte>;
using Blobs = std::vector<Blob>;

// Each argument of a remote call is encoded on its own, so that the server can keep a value it
// does not understand (a dict's key, a list's element) as bytes without knowing its type.
template <class... A>
Blobs encode_args(const A&... args) {
    Blobs out;
    out.reserve(sizeof...(A));
    (out.push_back(dumps(args)), ...);
    return out;
}

template <class R>
R decode_result(std::span<const std::byte> bytes) {
    if constexpr (std::is_void_v<R>) {
        (void)bytes;
    } else {
        return loads<R>(bytes);
    }
}

// The demangled name of a type, for error messages and type checks that read well.
std::string type_name_of(const std::type_info& type);

// A value's type as it is checked between processes (a Namespace attribute read as another
// type is an error, not garbage): the mangled name, the same in every process of one program.
template <class T>
std::string type_fingerprint() {
    return typeid(T).name();
}

// The entry points of a registered user type in the server. Plain function pointers, so that they
// travel to a server started by spawn or forkserver as code references (detail/code_ref.hpp).
using ObjectFactory = void* (*)(const Blobs& args);
using ObjectDeleter = void (*)(void* object);
using MethodEntry = Blob (*)(void* object, const Blobs& args);

struct RegisteredMethod {
    std::string name;
    MethodEntry call = nullptr;
};

struct RegisteredType {
    std::string type_id;
    std::string class_name;  // for messages: 'Counter' object ...
    ObjectFactory create = nullptr;
    ObjectDeleter destroy = nullptr;
    std::vector<RegisteredMethod> methods;
    bool shared = false;
    bool concurrent = false;  // methods may run at the same time; otherwise one call at a time
};

template <class T, std::size_t... I, class... A>
T* construct_from(const Blobs& args, std::index_sequence<I...>, std::tuple<A...>*) {
    return new T(loads<A>(args[I])...);
}

void check_argument_count(std::string_view what, std::size_t expected, std::size_t given);

template <class T, class... CtorArgs>
void* make_object(const Blobs& args) {
    check_argument_count("the constructor", sizeof...(CtorArgs), args.size());
    return construct_from<T>(args, std::index_sequence_for<CtorArgs...>{},
                             static_cast<std::tuple<std::decay_t<CtorArgs>...>*>(nullptr));
}

template <class T>
void delete_object(void* object) {
    delete static_cast<T*>(object);
}

template <class M>
struct member_function;
template <class C, class R, class... A>
struct member_function<R (C::*)(A...)> {
    using object = C;
    using result = R;
    using arguments = std::tuple<std::decay_t<A>...>;
};
template <class C, class R, class... A>
struct member_function<R (C::*)(A...) const> : member_function<R (C::*)(A...)> {};
template <class C, class R, class... A>
struct member_function<R (C::*)(A...) noexcept> : member_function<R (C::*)(A...)> {};
template <class C, class R, class... A>
struct member_function<R (C::*)(A...) const noexcept> : member_function<R (C::*)(A...)> {};

template <auto M, class Traits, std::size_t... I, class... A>
Blob invoke_member(void* object, const Blobs& args, std::index_sequence<I...>, std::tuple<A...>*) {
    auto* self = static_cast<typename Traits::object*>(object);
    using R = typename Traits::result;
    if constexpr (std::is_void_v<R>) {
        (self->*M)(loads<A>(args[I])...);
        return {};
    } else {
        return dumps(static_cast<std::decay_t<R>>((self->*M)(loads<A>(args[I])...)));
    }
}

template <auto M>
Blob call_member(void* object, const Blobs& args) {
    using Traits = member_function<decltype(M)>;
    using Arguments = typename Traits::arguments;
    check_argument_count("the method", std::tuple_size_v<Arguments>, args.size());
    return invoke_member<M, Traits>(object, args, std::make_index_sequence<std::tuple_size_v<Arguments>>{},
                                    static_cast<Arguments*>(nullptr));
}

// What travels when a proxy is handed to another process: where the server is, the key that
// opens it, and which object. Python's Token plus the authkey Python adds while spawning, and
// which server: a random number each server draws when it starts, so that a proxy of a server
// that is gone never reaches another one started later on the same address (whose object ids
// start again at 1).
struct ProxyToken {
    std::string type_id;
    std::uint8_t family = 0;  // 0: AF_UNIX (path), 1: AF_INET (host, port)
    std::string location;
    std::uint16_t port = 0;
    std::vector<std::byte> authkey;
    std::uint64_t id = 0;
    std::uint64_t server = 0;  // the server's instance number; 0: not known (not checked)

    template <class Archive>
    void serialize(Archive& ar) {
        ar(type_id, family, location, port, authkey, id, server);
    }
};

// One step of an iteration over a managed dict (Python's dict iterator, in the server): the
// dict's size and version when the iteration began, and the next key (with its value when asked),
// none at the end.
struct DictStep {
    std::uint64_t size = 0;
    std::uint64_t version = 0;
    std::optional<Blob> key;
    std::optional<Blob> value;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(size, version, key, value);
    }
};

}  // namespace mproc::detail
