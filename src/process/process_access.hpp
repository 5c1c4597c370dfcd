#pragma once
// The library's own way into Process handles (their state, and handles made from a state).
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>

#include "mproc/process.hpp"
#include "process/process_state.hpp"

namespace mproc::detail {

struct ProcessAccess {
    static Process make(std::shared_ptr<ProcessState> state) noexcept { return Process(std::move(state)); }
    static const std::shared_ptr<ProcessState>& state(const Process& p) noexcept { return p.state_; }
    static void replace_state(Process& p, std::shared_ptr<ProcessState> state) noexcept { p.state_ = std::move(state); }
};

// "Worker" for ns::Worker<int>: the unqualified class name, as Python's type(self).__name__.
std::string unqualified_type_name(const std::type_info& type);
// The demangled name of a type.
std::string demangled_name(const std::type_info& type);
// The demangled type name of the exception in `error`, with its what() in `message` (empty for an
// exception that is not a std::exception): how a task's exception travels to another process.
std::string exception_type_name(const std::exception_ptr& error, std::string& message);

}  // namespace mproc::detail
