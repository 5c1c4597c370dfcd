#pragma once
// mproc's logger (Python's multiprocessing.util: get_logger, log_to_stderr).
//
// One logger per process, named "multiprocessing" as in Python. With a stderr handler attached
// (log_to_stderr), each record is one line "[LEVEL/ProcessName] message", written with a single
// write(2) so that lines of different processes never tear. mproc logs its life-cycle events at
// the levels and with the texts Python uses (see docs/logging.md). Children started with fork
// inherit the configuration.
//
// The level is unset (NOTSET) until configured; an unset level behaves as WARNING, as Python's
// does through the root logger, so mproc's DEBUG and INFO messages stay quiet by default.
#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace mproc {

enum class LogLevel : int {
    notset = 0,
    subdebug = 5,
    debug = 10,
    info = 20,
    subwarning = 25,
    warning = 30,
    error = 40,
    critical = 50,
};

// Python's constant names, for code that reads like Python's: mproc::logging::DEBUG.
namespace logging {
inline constexpr LogLevel NOTSET = LogLevel::notset;
inline constexpr LogLevel SUBDEBUG = LogLevel::subdebug;
inline constexpr LogLevel DEBUG = LogLevel::debug;
inline constexpr LogLevel INFO = LogLevel::info;
inline constexpr LogLevel SUBWARNING = LogLevel::subwarning;
inline constexpr LogLevel WARNING = LogLevel::warning;
inline constexpr LogLevel ERROR = LogLevel::error;
inline constexpr LogLevel CRITICAL = LogLevel::critical;
}  // namespace logging

// "DEBUG", "SUBWARNING", ...; "Level N" for a level without a name, as Python.
std::string level_name(LogLevel level);

class Logger {
public:
    // Receives every record at or above the logger's level.
    using Handler = std::function<void(LogLevel level, std::string_view process_name, std::string_view message)>;

    void set_level(LogLevel level) noexcept { level_.store(static_cast<int>(level), std::memory_order_relaxed); }
    void setLevel(LogLevel level) noexcept { set_level(level); }  // Python's spelling
    LogLevel level() const noexcept { return static_cast<LogLevel>(level_.load(std::memory_order_relaxed)); }
    // The level that decides: WARNING while unset.
    LogLevel effective_level() const noexcept;
    bool is_enabled_for(LogLevel level) const noexcept {
        return static_cast<int>(level) >= static_cast<int>(effective_level());
    }

    // Attaches the "[LEVEL/ProcessName] message" handler on stderr (once; later calls do nothing).
    void add_stderr_handler();
    bool has_stderr_handler() const;
    void add_handler(Handler handler);
    void clear_handlers();

    void log(LogLevel level, std::string_view message);
    template <class... A>
    void log(LogLevel level, fmt::format_string<A...> format, A&&... args) {
        if (is_enabled_for(level)) log(level, std::string_view(fmt::format(format, std::forward<A>(args)...)));
    }
    template <class... A> void sub_debug(fmt::format_string<A...> f, A&&... a) { log(LogLevel::subdebug, f, std::forward<A>(a)...); }
    template <class... A> void debug(fmt::format_string<A...> f, A&&... a) { log(LogLevel::debug, f, std::forward<A>(a)...); }
    template <class... A> void info(fmt::format_string<A...> f, A&&... a) { log(LogLevel::info, f, std::forward<A>(a)...); }
    template <class... A> void sub_warning(fmt::format_string<A...> f, A&&... a) { log(LogLevel::subwarning, f, std::forward<A>(a)...); }
    template <class... A> void warning(fmt::format_string<A...> f, A&&... a) { log(LogLevel::warning, f, std::forward<A>(a)...); }
    template <class... A> void error(fmt::format_string<A...> f, A&&... a) { log(LogLevel::error, f, std::forward<A>(a)...); }
    template <class... A> void critical(fmt::format_string<A...> f, A&&... a) { log(LogLevel::critical, f, std::forward<A>(a)...); }

private:
    std::atomic<int> level_{0};
};

// The library's logger.
Logger& get_logger();

// Attaches the stderr handler to the library's logger, sets its level when one is given, and
// returns the logger.
Logger& log_to_stderr(std::optional<LogLevel> level = std::nullopt);

}  // namespace mproc
