#pragma once
// System-call level I/O for connections: reads and writes that retry EINTR, never raise SIGPIPE,
// and waits that keep a deadline across interruptions.
#include <cstddef>
#include <span>

#include "base/deadline.hpp"
#include "base/unique_fd.hpp"

namespace mproc::transport {

using detail::close_fd;

using detail::Deadline;

// Whether `fd` is a socket (writes then use send with MSG_NOSIGNAL). OSError if it is not open.
bool is_socket(int fd);

// One read(2): the bytes read (> 0), 0 at end of file, or kWouldBlock on a non-blocking
// descriptor with nothing to read. EINTR is retried; other errors throw OSError naming `what`.
inline constexpr std::ptrdiff_t kWouldBlock = -1;
std::ptrdiff_t read_some(int fd, std::span<std::byte> into, const char* what);

// One write of `first` then `second` (gathered): the bytes written, or kWouldBlock. A closed peer
// is OSError(EPIPE), never a SIGPIPE: sockets are written with MSG_NOSIGNAL; for other
// descriptors SIGPIPE is blocked in the calling thread during the write and a SIGPIPE the write
// raised is consumed before it is unblocked.
std::ptrdiff_t write_some(int fd, bool socket, std::span<const std::byte> first, std::span<const std::byte> second,
                          const char* what);

// Writes all of `first` then `second`, waiting for room on a non-blocking descriptor until
// `deadline` (TimeoutError then). Returns normally or throws OSError; `written` says how far it
// got either way.
void write_all(int fd, bool socket, std::span<const std::byte> first, std::span<const std::byte> second,
               const char* what, std::size_t& written, const Deadline& deadline = Deadline::never());

enum class Readiness { ready, timed_out };

// Waits until `fd` is readable (events = POLLIN) or writable (POLLOUT), hung up or in error, or
// the deadline passes. EINTR is retried with the time that remains. OSError(EBADF) when `fd` is
// not open.
Readiness wait_fd(int fd, short events, const Deadline& deadline);

// Sets or clears O_NONBLOCK.
void set_nonblocking(int fd, bool nonblocking);

}  // namespace mproc::transport
