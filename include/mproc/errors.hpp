#pragma once
// The exceptions mproc throws, one small hierarchy so callers can catch by kind.
//
//   std::runtime_error
//   └── ProcessError            every mproc error (Python: multiprocessing.ProcessError)
//       ├── UsageError          the API was used against its rules: start twice, join before start,
//       │                       close while running... (Python raises AssertionError/ValueError);
//       │                       what() names the rule, in Python's words where Python has them
//       ├── OSError             a system call failed; code() is the errno as a std::error_code
//       │                       (Python: OSError and its subclasses); also Python's OSError texts
//       │                       without an errno: a closed Connection or Listener, the wrong end of
//       │                       a one-way pipe
//       ├── DecodeError         bytes that do not decode to the requested type (truncated, corrupt)
//       ├── TimeoutError        a wait with a deadline ran out (Python: multiprocessing.TimeoutError)
//       ├── EOFError            a connection's peer closed it and no message is left to read
//       │                       (Python: EOFError from Connection.recv)
//       ├── ProtocolError       a peer's bytes break the message framing: a frame cut short by end of
//       │                       file, a negative length, a length over the limit (Python: OSError)
//       ├── AuthenticationError the authkey challenge failed, in either direction
//       │                       (Python: multiprocessing.AuthenticationError)
//       ├── BufferTooShort      recv_bytes_into's buffer cannot hold the message; message() has all of it
//       │                       (Python: multiprocessing.BufferTooShort)
//       ├── OwnerDiedError      a lock was acquired whose previous owner died holding it; the caller
//       │                       holds the lock now (not in Python, where the lock stays locked)
//       ├── BrokenBarrierError  a Barrier was aborted, reset, timed out or lost a party
//       │                       (Python: threading.BrokenBarrierError)
//       ├── KeyError            a managed dict has no such key (Python: KeyError); what() is the key's repr
//       ├── IndexError          a managed list or array index is out of range (Python: IndexError)
//       ├── ValueError          a managed list has no such value (index, remove), a managed
//       │                       BoundedSemaphore was released too often (Python: ValueError; an
//       │                       mproc BoundedSemaphore's over-release is a UsageError)
//       ├── AttributeError      a Namespace has no such attribute, or a proxy does not expose the
//       │                       method called (Python: AttributeError, with Python's message)
//       ├── RemoteError         a managed object's method threw in the manager's server; type_name()
//       │   │                   and message() say what (Python: multiprocessing.managers.RemoteError)
//       │   └── TaskError       a Pool task threw (pool.hpp; Python re-raises the task's exception)
//       ├── WorkerLostError     the Pool worker running a task died (pool.hpp; not in Python)
//       ├── Empty / Full        a queue (Queue or a managed one) had nothing to get / no room to
//       │                       put in time (Python: queue.Empty, queue.Full)
//       └── EOFError
//           └── ManagerDiedError the manager's server is gone: killed, shut down, or unreachable
//                               (Python: EOFError, ConnectionRefusedError, BrokenPipeError)
//
// docs/errors.md has the table: every type, its Python counterpart, and when it is thrown.
//
// An uncaught exception in a child process ends it with exit code 1 after its type and message are
// written to the child's stderr; a child's exit request (mproc::exit) is not an exception of this
// hierarchy and should not be caught (see process.hpp).
#include <cstddef>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

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
    // An error of this kind that no system call reported, with Python's text as it is: using a
    // closed Connection ("handle is closed") or Listener ("listener is closed"), the wrong end of a
    // one-way pipe ("connection is write-only"). code() is empty (value 0), as Python's errno is
    // None there.
    explicit OSError(const std::string& message);
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

// The peer closed the connection (or its write side) at a message boundary: there is nothing left
// to receive. The connection stays open, as in Python, because its write side may still work.
class EOFError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

// Bytes from a peer that cannot be a message: the connection is out of step with its peer, so it
// has been closed by the time this is thrown. Distinct from EOFError (a clean end) and from
// DecodeError (a whole message whose contents are not a value of the requested type).
class ProtocolError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

// The authkey challenge failed: the peer's digest was wrong ("digest received was wrong"), ours
// was rejected ("digest sent was rejected"), or the peer's handshake messages were malformed or
// asked for a digest that is not allowed. The connection has been closed.
class AuthenticationError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

// recv_bytes_into: the message is longer than the space the buffer has after the offset. The
// whole message was received (the connection stays usable) and is kept here, as Python keeps it
// in args[0]. Copying the exception shares the message rather than copying it.
class BufferTooShort : public ProcessError {
public:
    explicit BufferTooShort(std::vector<std::byte> message)
        : ProcessError("buffer too short for a message of " + std::to_string(message.size()) + " bytes"),
          message_(std::make_shared<const std::vector<std::byte>>(std::move(message))) {}

    std::span<const std::byte> message() const noexcept { return *message_; }

private:
    std::shared_ptr<const std::vector<std::byte>> message_;
};

namespace detail {
class HeldLock;
}

// An acquisition (lock(), try_lock(), try_lock_for(), acquire(), or an operation that takes a lock
// internally, such as Value::load()) got a Lock or RLock whose previous owner died holding it: a
// process killed, or a thread that ended, in its critical section. The data the lock protects may
// be half-updated. Exactly one acquirer is told: this one.
//
// The caller holds the lock when this is thrown, and the exception owns that hold: unless the
// handler calls keep_lock(), the lock is released when the exception is destroyed, at the end of
// the handler that caught it. So a std::scoped_lock or std::unique_lock whose constructor threw
// (its destructor never runs) does not leave the lock held, and the handler can repair the data
// before anyone else sees it:
//
//   try {
//       std::scoped_lock guard(lock);
//       update(shared);
//   } catch (const mproc::OwnerDiedError& e) {
//       repair(shared);  // still under the lock
//   }                    // released here
//
// Python-style code that goes on into its critical section calls keep_lock() and releases the lock
// itself. Releasing the lock (release(), unlock()) from the handler's thread also ends the
// exception's hold. The hold belongs to the thread that acquired: an exception destroyed in
// another thread (through std::exception_ptr) cannot release it.
//
// Condition::wait() is the exception to "the exception owns the hold": it re-acquires the lock
// that its caller held before waiting, so the caller's guard owns it and holds_lock() is false.
class OwnerDiedError : public ProcessError {
public:
    OwnerDiedError(const std::string& what, std::shared_ptr<detail::HeldLock> held);

    // True while this exception (or a copy) still holds the lock.
    bool holds_lock() const noexcept;
    // Releases the lock now (from the thread that acquired it).
    void release() const;
    // Hands the hold over to the caller, who releases the lock later like any acquisition.
    void keep_lock() const noexcept;

private:
    std::shared_ptr<detail::HeldLock> held_;
};

// Barrier::wait() cannot complete: the barrier was aborted or reset, a party's wait timed out,
// the action threw, or a party died while waiting. Python: threading.BrokenBarrierError.
class BrokenBarrierError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

// Errors from managed objects (managers.hpp). Python raises its built-in exceptions; mproc keeps
// them inside its hierarchy so that `catch (const mproc::ProcessError&)` still sees every error.
class KeyError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

class IndexError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

class ValueError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

class AttributeError : public ProcessError {
public:
    using ProcessError::ProcessError;
};

// Code run in another process threw: the exception's type name and message. A managed object's
// method in the manager's server (managers.hpp); a Pool task throws its subclass TaskError.
class RemoteError : public ProcessError {
public:
    RemoteError(std::string type_name, std::string message)
        : ProcessError(type_name + ": " + message), type_name_(std::move(type_name)), message_(std::move(message)) {}
    const std::string& type_name() const noexcept { return type_name_; }
    const std::string& message() const noexcept { return message_; }

private:
    std::string type_name_;
    std::string message_;
};

// get() with block == false or a timeout found no message in time, on a Queue (queue.hpp) or a
// managed queue (Python: queue.Empty).
class Empty : public ProcessError {
public:
    Empty() : ProcessError("queue is empty") {}
    using ProcessError::ProcessError;
};

// A bounded queue's put() with block == false or a timeout found no room in time (Python:
// queue.Full).
class Full : public ProcessError {
public:
    Full() : ProcessError("queue is full") {}
    using ProcessError::ProcessError;
};

// The manager's server cannot be reached: its process ended (killed, or shut down) or its address
// refuses connections. A proxy call that was in flight when the server died throws this too.
class ManagerDiedError : public EOFError {
public:
    using EOFError::EOFError;
};

}  // namespace mproc
