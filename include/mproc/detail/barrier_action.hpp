#pragma once
// What a Barrier runs when its last party arrives (synchronize.hpp's BarrierOptions::action), in a
// form that can travel to another process.
#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "mproc/detail/code_ref.hpp"

namespace mproc::detail {

// A Barrier's action: any callable under fork; a function or captureless lambda (remembered as a
// function pointer, so that it can travel) under spawn and forkserver.
class BarrierAction {
public:
    BarrierAction() = default;
    BarrierAction(std::nullptr_t) {}
    template <class F>
        requires(!std::same_as<std::decay_t<F>, BarrierAction> && !std::same_as<std::decay_t<F>, std::nullptr_t> &&
                 std::invocable<std::decay_t<F>&>)
    BarrierAction(F&& action) {  // NOLINT: implicit, for designated initializers
        if constexpr (std::is_convertible_v<std::decay_t<F>, void (*)()>) {
            pointer_ = static_cast<void (*)()>(action);
            if (pointer_ != nullptr) call_ = pointer_;
        } else {
            call_ = std::forward<F>(action);
        }
    }

    explicit operator bool() const noexcept { return static_cast<bool>(call_); }
    void operator()() const { call_(); }

    template <class Archive>
    void save(Archive& ar) const {
        if (call_ && pointer_ == nullptr) throw_not_portable();
        std::optional<CodeRef> ref;
        if (pointer_ != nullptr) ref = code_ref_of_function(pointer_);
        ar(ref);
    }
    template <class Archive>
    void load(Archive& ar) {
        std::optional<CodeRef> ref;
        ar(ref);
        pointer_ = ref ? resolve_function<void()>(*ref) : nullptr;
        call_ = pointer_ ? std::function<void()>(pointer_) : std::function<void()>();
    }

private:
    [[noreturn]] static void throw_not_portable();
    std::function<void()> call_;
    void (*pointer_)() = nullptr;
};

}  // namespace mproc::detail
