#pragma once
// What connection.hpp's connection::wait() needs inline: the descriptor it watches for each kind
// of object it accepts, and whether it returns the ready objects as copies or as pointers.
#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <type_traits>
#include <variant>
#include <vector>

namespace mproc {

class Connection;

namespace connection::detail {

// The descriptor wait() watches for each kind of object it accepts.
inline int waitable_fd(int fd) noexcept { return fd; }
// Defined in connection.hpp, where Connection is complete.
inline int waitable_fd(const Connection& connection);
// A Process (or anything with a sentinel): its sentinel, readable once it has ended.
template <class T>
    requires requires(const T& object) {
        { object.sentinel() } -> std::convertible_to<int>;
    }
int waitable_fd(const T& object) {
    return object.sentinel();
}
template <class T>
    requires requires(const T& object) {
        { object.fileno() } -> std::convertible_to<int>;
    }
int waitable_fd(const T& object) {
    return object.fileno();
}
// Pointers and reference_wrappers: declared before the concept below so that it sees them.
template <class T>
int waitable_fd(T* object);
template <class T>
int waitable_fd(const std::reference_wrapper<T>& object);

template <class T>
concept has_waitable_fd = requires(const T& object) { waitable_fd(object); };

template <class... Ts>
    requires(has_waitable_fd<Ts> && ...)
int waitable_fd(const std::variant<Ts...>& object) {
    return std::visit([](const auto& alternative) { return waitable_fd(alternative); }, object);
}
template <class T>
int waitable_fd(T* object) {
    return waitable_fd(*object);
}
template <class T>
int waitable_fd(const std::reference_wrapper<T>& object) {
    return waitable_fd(object.get());
}

// The indices of the ready descriptors, in order.
std::vector<std::size_t> wait_ready(std::span<const int> fds, std::optional<std::chrono::nanoseconds> timeout);

// Connections are returned by address even though they can be copied: a copy would duplicate the
// descriptor, and the caller wants the very object that is ready (Python returns the same object).
template <class Element>
inline constexpr bool wait_returns_copies =
    std::is_copy_constructible_v<Element> && !std::is_base_of_v<Connection, Element>;

}  // namespace connection::detail

}  // namespace mproc
