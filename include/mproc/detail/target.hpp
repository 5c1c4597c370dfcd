#pragma once
// What a Process runs, in two forms: a closure for the fork start method (any callable with
// any arguments, inherited with the address space), and, where the callable and its arguments
// allow it, a portable call that can travel to a spawn or forkserver child (code references
// plus codec-encoded arguments).
//
// A call is portable when
//  - the callable is a function pointer (a free function or a static member function), or an
//    empty, default-constructible class (a captureless lambda, a stateless functor), and
//  - every decayed argument type is Encodable.
// Functions and captureless lambdas need no registration: the code that decodes the arguments
// and calls the target is a function template instantiated per (callable, arguments) and
// travels as a code reference (detail/code_ref.hpp), as does a function pointer target.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mproc/detail/decoding_scope.hpp"
#include "mproc/codec.hpp"
#include "mproc/detail/code_ref.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

// The entry point of a portable call in the child: decodes what it needs and calls the target.
using PortableEntry = void (*)(Decoder&);

template <class F>
inline constexpr bool is_function_pointer =
    std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

template <class F>
inline constexpr bool is_stateless_callable =
    std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F>;

template <class F, class... Args>
inline constexpr bool is_portable_call =
    (is_function_pointer<F> || is_stateless_callable<F>) && (Encodable<Args> && ...);

// Why a call is not portable, for error messages; empty when it is.
std::string describe_not_portable(bool callable_ok, const std::type_info& callable,
                                  std::size_t bad_argument, const std::type_info* bad_argument_type);

template <class Fn, class... Args>
void call_function_pointer(Decoder& in) {
    Fn fn = resolve_function<std::remove_pointer_t<Fn>>(in.read<CodeRef>());
    auto args = [&in] {
        const ArgumentDecoding scope;
        return in.read<std::tuple<Args...>>();
    }();
    std::apply([fn](auto&... a) { static_cast<void>(std::invoke(fn, a...)); }, args);
}

template <class F, class... Args>
void call_stateless(Decoder& in) {
    auto args = [&in] {
        const ArgumentDecoding scope;
        return in.read<std::tuple<Args...>>();
    }();
    F fn{};
    std::apply([&fn](auto&... a) { static_cast<void>(std::invoke(fn, a...)); }, args);
}

// Type-erased target owned by a Process.
class Target {
public:
    virtual ~Target() = default;
    virtual void invoke() = 0;
    // True when encode_portable() can succeed.
    virtual bool portable() const noexcept = 0;
    // Appends the portable call: the entry's code reference, then what the entry decodes.
    // Throws UsageError, naming what cannot travel, when the call is not portable.
    virtual void encode_portable(Encoder& out) const = 0;
};

template <class F, class... Args>
class BoundTarget final : public Target {
public:
    template <class G, class... A>
    explicit BoundTarget(G&& fn, A&&... args) : fn_(std::forward<G>(fn)), args_(std::forward<A>(args)...) {}

    void invoke() override {
        std::apply([this](auto&... a) { static_cast<void>(std::invoke(fn_, a...)); }, args_);
    }

    bool portable() const noexcept override { return is_portable_call<F, Args...>; }

    void encode_portable(Encoder& out) const override {
        if constexpr (is_function_pointer<F> && (Encodable<Args> && ...)) {
            out.write(code_ref_of_function(&call_function_pointer<F, Args...>));
            out.write(code_ref_of_function(fn_));
            out.write(args_);
        } else if constexpr (is_stateless_callable<F> && (Encodable<Args> && ...)) {
            out.write(code_ref_of_function(&call_stateless<F, Args...>));
            out.write(args_);
        } else {
            throw UsageError(describe_not_portable(is_function_pointer<F> || is_stateless_callable<F>, typeid(F),
                                                   first_bad_argument(), first_bad_argument_type()));
        }
    }

private:
    static constexpr std::size_t first_bad_argument() {
        std::size_t index = 0, found = 0;
        ((found == 0 && !Encodable<Args> ? (found = index + 1) : 0, ++index), ...);
        return found;  // 1-based; 0 when every argument encodes
    }
    static const std::type_info* first_bad_argument_type() {
        const std::type_info* found = nullptr;
        ((found == nullptr && !Encodable<Args> ? (found = &typeid(Args)) : nullptr), ...);
        return found;
    }

    F fn_;
    std::tuple<Args...> args_;
};

template <class F, class... Args>
std::shared_ptr<Target> make_target(F&& fn, Args&&... args) {
    return std::make_shared<BoundTarget<std::decay_t<F>, std::decay_t<Args>...>>(std::forward<F>(fn),
                                                                                 std::forward<Args>(args)...);
}

// Runs a portable call decoded from `in` (in a spawn or forkserver child).
void run_portable_call(Decoder& in);

}  // namespace mproc::detail
