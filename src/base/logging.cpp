#include "mproc/logging.hpp"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <vector>

#include "base/lifecycle.hpp"
#include "base/fork_aware_mutex.hpp"

namespace mproc {

namespace {

struct Handlers {
    detail::ForkAwareMutex mutex;
    bool stderr_attached = false;
    std::vector<Logger::Handler> custom;
};

Handlers& handlers() {
    static Handlers* h = [] {
        return new Handlers();  // never destroyed: children and exit handlers log late
    }();
    return *h;
}

void write_all(int fd, std::string_view text) {
    while (!text.empty()) {
        ssize_t n = ::write(fd, text.data(), text.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return;  // a logger has nowhere to report its own failure
        }
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace

std::string level_name(LogLevel level) {
    switch (level) {
        case LogLevel::notset: return "NOTSET";
        case LogLevel::subdebug: return "SUBDEBUG";
        case LogLevel::debug: return "DEBUG";
        case LogLevel::info: return "INFO";
        case LogLevel::subwarning: return "SUBWARNING";
        case LogLevel::warning: return "WARNING";
        case LogLevel::error: return "ERROR";
        case LogLevel::critical: return "CRITICAL";
    }
    return "Level " + std::to_string(static_cast<int>(level));
}

LogLevel Logger::effective_level() const noexcept {
    LogLevel l = level();
    return l == LogLevel::notset ? LogLevel::warning : l;
}

void Logger::add_stderr_handler() {
    std::lock_guard lock(handlers().mutex);
    handlers().stderr_attached = true;
}

bool Logger::has_stderr_handler() const {
    std::lock_guard lock(handlers().mutex);
    return handlers().stderr_attached;
}

void Logger::add_handler(Handler handler) {
    std::lock_guard lock(handlers().mutex);
    handlers().custom.push_back(std::move(handler));
}

void Logger::clear_handlers() {
    std::lock_guard lock(handlers().mutex);
    handlers().stderr_attached = false;
    handlers().custom.clear();
}

void Logger::log(LogLevel level, std::string_view message) {
    if (!is_enabled_for(level)) return;
    const std::string process_name = detail::current_process_name();
    std::lock_guard lock(handlers().mutex);
    if (handlers().stderr_attached) {
        // One write per record, so that records of different processes never interleave.
        std::string line = fmt::format("[{}/{}] {}\n", level_name(level), process_name, message);
        write_all(STDERR_FILENO, line);
    }
    for (auto& handler : handlers().custom) handler(level, process_name, message);
}

Logger& get_logger() {
    static Logger* logger = new Logger();  // never destroyed, as the handlers
    detail::install_exit_sequence();  // the exit sequence logs "process shutting down"
    return *logger;
}

Logger& log_to_stderr(std::optional<LogLevel> level) {
    Logger& logger = get_logger();
    logger.add_stderr_handler();
    if (level) logger.set_level(*level);
    return logger;
}

}  // namespace mproc
