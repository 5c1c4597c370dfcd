#pragma once
// Byte streams with descriptors attached, over the Unix sockets that carry start requests
// (spawn's socketpair, the fork server's channel). The descriptors travel with recvmsg/sendmsg
// (SCM_RIGHTS) here; plain bytes are written and read through transport (transport/fd_io.hpp),
// which handles EINTR and SIGPIPE once for every channel.
#include <cstddef>
#include <vector>

namespace mproc::detail {

// The most descriptors one message carries (the kernel's SCM_MAX_FD is 253).
inline constexpr int kMaxDescriptorsPerMessage = 250;

// Sends `size` bytes with `fds` attached to the first of them (MSG_NOSIGNAL). False when the peer
// has gone; throws OSError on other failures.
bool send_with_descriptors(int socket, const void* data, std::size_t size, const std::vector<int>& fds);

// Receives exactly `size` bytes and the descriptors that come with them (close-on-exec).
// Returns false on end of file before the first byte; throws on a short read, truncated
// descriptors, or an error.
bool receive_with_descriptors(int socket, void* data, std::size_t size, std::vector<int>& fds);

// Reads exactly `size` bytes (no descriptors come with them). False at end of file or when the
// read fails.
bool read_exact(int fd, void* data, std::size_t size);

// Reads from the socket until end of file, collecting descriptors on the way.
std::vector<std::byte> receive_to_end(int socket, std::vector<int>& fds);

}  // namespace mproc::detail
