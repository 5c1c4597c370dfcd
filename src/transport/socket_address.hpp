#pragma once
// Addresses as the OS sees them: sockaddr conversion, the private directory for arbitrary
// AF_UNIX addresses, and a descriptor guard.
#include <sys/socket.h>

#include <string>
#include <utility>

#include "mproc/connection.hpp"

namespace mproc::transport {

struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;

    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
    sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
};

int socket_family(Family family) noexcept;

// The sockaddr for an address; an AF_INET host name is resolved (IPv4 only, as Python's AF_INET).
// UsageError for an empty path; OSError(ENAMETOOLONG) for a path that does not fit sun_path.
SocketAddress to_socket_address(const Address& address);

// The Address of a sockaddr filled by accept(2), getsockname(2) or getpeername(2).
Address from_socket_address(const SocketAddress& address, Family family);

// True for an AF_UNIX address in Linux's abstract namespace (a path starting with '\0').
bool is_abstract(const Address& address) noexcept;

}  // namespace mproc::transport
