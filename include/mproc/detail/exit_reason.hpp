#pragma once
// What process.hpp's mproc::exit(reason) needs inline: which reasons it takes (anything fmt
// formats or with an operator<<) and their text.
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace mproc::detail {

[[noreturn]] void exit_with_reason(std::string reason);

template <class Reason>
concept ExitReason = !std::is_integral_v<Reason> && !std::is_enum_v<Reason> &&
                     (fmt::is_formattable<Reason>::value || requires(std::ostream& os, const Reason& r) { os << r; });

template <class Reason>
std::string exit_reason_text(const Reason& reason) {
    if constexpr (fmt::is_formattable<Reason>::value) {
        return fmt::format("{}", reason);
    } else {
        std::ostringstream text;
        text << reason;
        return text.str();
    }
}

}  // namespace mproc::detail
