#pragma once
// The exceptions mproc throws, one small hierarchy so callers can catch by kind.
//
//   std::runtime_error
//   └── ProcessError            every mproc error (Python: multiprocessing.ProcessError)
//       ├── UsageError          the API was used against its rules: start twice, join before start,
//       │                       close while running... (Python raises AssertionError/ValueError);
//       │                       what() names the rule, in Python's words where Python has them
//       ├── OSError             a system call failed; code() is the errno as a std::error_code
//       ├── DecodeError         bytes that do not decode to the requested type (truncated, corrupt)
//       └── TimeoutError        a wait with a deadline ran out (Python: multiprocessing.TimeoutError)
//
// An uncaught exception in a child process ends it with exit code 1 after its type and message are
// written to the child's stderr; a child's exit request (mproc::exit) is not an exception of this
// hierarchy and should not be caught (see process.hpp).
#include <stdexcept>
#include <string>
#include <system_error>

namespace mproc {

class ProcessError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class UsageError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

class OSError : public ProcessError {
public:
    // `what` names the operation that failed; the message becomes "<what>: <strerror(errno)>".
    OSError(const std::string& what, int errno_value);
    const std::error_code& code() const noexcept { return code_; }

private:
    std::error_code code_;
};

class DecodeError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

class TimeoutError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

}  // namespace mproc
