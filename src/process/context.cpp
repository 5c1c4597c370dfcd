#include "mproc/context.hpp"

#include <cstdlib>
#include <mutex>

#include "base/fork_aware_mutex.hpp"
#include "process/runtime.hpp"

namespace mproc {

std::string_view to_string(StartMethod method) noexcept {
    switch (method) {
        case StartMethod::fork: return "fork";
        case StartMethod::spawn: return "spawn";
        case StartMethod::forkserver: return "forkserver";
    }
    return "fork";
}

StartMethod parse_start_method(std::string_view name) {
    if (name == "fork") return StartMethod::fork;
    if (name == "spawn") return StartMethod::spawn;
    if (name == "forkserver") return StartMethod::forkserver;
    throw UsageError("cannot find context for '" + std::string(name) + "'");
}

namespace {

detail::ForkAwareMutex choice_mutex;  // guards Runtime::chosen_start_method

StartMethod fix_default_locked() {
    auto& chosen = detail::Runtime::get().chosen_start_method;
    if (!chosen) {
        const char* from_environment = std::getenv("MPROC_START_METHOD");
        if (from_environment != nullptr && *from_environment != '\0') {
            try {
                chosen = parse_start_method(from_environment);
            } catch (const UsageError&) {
                throw UsageError("MPROC_START_METHOD must be fork, spawn or forkserver, not '" +
                                 std::string(from_environment) + "'");
            }
        } else {
            chosen = StartMethod::fork;
        }
    }
    return *chosen;
}

const Context& context_of(StartMethod method) {
    switch (method) {
        case StartMethod::fork: return fork_context;
        case StartMethod::spawn: return spawn_context;
        case StartMethod::forkserver: return forkserver_context;
    }
    return fork_context;
}

}  // namespace

namespace detail {
StartMethod default_start_method() {
    Runtime::get();  // created before the lock: creating it registers a fork-aware mutex
    std::lock_guard lock(choice_mutex);
    return fix_default_locked();
}
}  // namespace detail

const Context& get_context(std::string_view method) {
    if (method.empty()) return context_of(detail::default_start_method());
    return context_of(parse_start_method(method));
}

void set_start_method(std::optional<std::string_view> method, bool force) {
    auto& chosen = detail::Runtime::get().chosen_start_method;
    std::lock_guard lock(choice_mutex);
    if (chosen && !force) throw UsageError("context has already been set");
    if (!method) {
        if (!force) throw UsageError("set_start_method(nullopt) needs force=true");
        chosen.reset();
        return;
    }
    chosen = parse_start_method(*method);
}

std::optional<std::string> get_start_method(bool allow_none) {
    auto& chosen = detail::Runtime::get().chosen_start_method;
    std::lock_guard lock(choice_mutex);
    if (!chosen && allow_none) return std::nullopt;
    return std::string(to_string(fix_default_locked()));
}

std::vector<std::string> get_all_start_methods() {
    std::vector<std::string> methods = {"fork", "spawn", "forkserver"};
    std::string first = std::string(to_string(detail::default_start_method()));
    std::erase(methods, first);
    methods.insert(methods.begin(), first);
    return methods;
}

}  // namespace mproc
