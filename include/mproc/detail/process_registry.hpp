#pragma once
// The registry behind MPROC_REGISTER_PROCESS: how a Process subclass is rebuilt in a spawn or
// forkserver child. The parent finds the subclass's entry by its dynamic type; the child receives
// the entry's factory as a code reference and the object's members encoded by the codec.
#include <memory>
#include <type_traits>
#include <typeinfo>

#include "mproc/detail/decoding_scope.hpp"
#include "mproc/codec.hpp"
#include "mproc/process.hpp"

namespace mproc::detail {

using ProcessFactory = Process* (*)(Decoder&);
using ProcessEncoder = void (*)(const Process&, Encoder&);

struct ProcessTypeEntry {
    ProcessFactory create = nullptr;
    ProcessEncoder encode = nullptr;
};

void register_process_type(const std::type_info& type, ProcessTypeEntry entry);
// nullptr when the type was not registered.
const ProcessTypeEntry* find_process_type(const std::type_info& type);

template <class T>
Process* create_registered_process(Decoder& in) {
    const ArgumentDecoding scope;
    auto object = std::make_unique<T>();
    if constexpr (Encodable<T>) in.read_into(*object);
    return object.release();
}

template <class T>
void encode_registered_process(const Process& object, Encoder& out) {
    if constexpr (Encodable<T>) out.write(static_cast<const T&>(object));
}

template <class T>
struct ProcessTypeRegistrar {
    ProcessTypeRegistrar() {
        static_assert(std::is_base_of_v<Process, T>, "MPROC_REGISTER_PROCESS takes a class derived from mproc::Process");
        static_assert(std::is_default_constructible_v<T>,
                      "a Process subclass that travels to spawn/forkserver children needs a default constructor");
        static_assert(Encodable<T> || sizeof(T) == sizeof(Process),
                      "this Process subclass has data members: give it a cereal-style serialize() so that they "
                      "travel to spawn/forkserver children");
        register_process_type(typeid(T), {&create_registered_process<T>, &encode_registered_process<T>});
    }
};

}  // namespace mproc::detail

#define MPROC_DETAIL_CONCAT2(a, b) a##b
#define MPROC_DETAIL_CONCAT(a, b) MPROC_DETAIL_CONCAT2(a, b)

// Lets a Process subclass travel to spawn and forkserver children; write it once at namespace
// scope after the class. The class needs a default constructor and, if it has data members, a
// cereal-style serialize() (codec.hpp). Under fork no registration is needed.
//
//   struct Worker : mproc::Process {
//       int rounds = 0;
//       void run() override;
//       template <class Archive> void serialize(Archive& ar) { ar(rounds); }
//   };
//   MPROC_REGISTER_PROCESS(Worker);
#define MPROC_REGISTER_PROCESS(Type)                                                              \
    [[maybe_unused]] static const ::mproc::detail::ProcessTypeRegistrar<Type> MPROC_DETAIL_CONCAT( \
        mproc_process_registrar_, __COUNTER__) {}
