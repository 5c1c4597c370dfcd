// Client(): connect, then run the authkey challenge on the blocking socket.
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "mproc/connection.hpp"
#include "transport/fd_io.hpp"
#include "transport/frame.hpp"
#include "transport/handshake.hpp"
#include "transport/socket_address.hpp"

namespace mproc {

namespace {

void connect_socket(int fd, const transport::SocketAddress& where, const Address& address) {
    if (::connect(fd, where.get(), where.length) == 0) return;
    int error = errno;
    if (error == EINTR || error == EINPROGRESS) {
        // An interrupted connect goes on in the background; wait for its outcome.
        transport::wait_fd(fd, POLLOUT, transport::Deadline::never());
        socklen_t length = sizeof error;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) error = errno;
        if (error == 0) return;
    }
    throw OSError("connect(" + connection::to_string(address) + ")", error);
}

void run_handshake(int fd, transport::Handshake& handshake, const transport::Deadline& deadline) {
    std::byte buffer[transport::kMaxHeaderSize + kMaxHandshakeMessageSize];
    for (;;) {
        while (!handshake.output().empty()) {
            std::size_t written = 0;
            transport::write_all(fd, true, handshake.output(), {}, "handshake", written);
            handshake.consume_output(written);
        }
        if (handshake.done()) return;
        if (transport::wait_fd(fd, POLLIN, deadline) == transport::Readiness::timed_out)
            throw TimeoutError("the authentication handshake did not complete in time");
        const std::ptrdiff_t n = transport::read_some(fd, std::span(buffer, handshake.wanted()), "handshake");
        if (n == 0) throw AuthenticationError("the peer closed the connection during the authentication handshake");
        if (n == transport::kWouldBlock) continue;
        try {
            handshake.feed(std::span(buffer, static_cast<std::size_t>(n)));
        } catch (const AuthenticationError&) {
            // Send #FAILURE# if the protocol calls for it; the peer may already be gone.
            try {
                std::size_t written = 0;
                if (!handshake.output().empty()) transport::write_all(fd, true, handshake.output(), {}, "handshake", written);
            } catch (const OSError&) {
            }
            throw;
        }
    }
}

}  // namespace

Connection Client(const Address& address, ClientOptions options) {
    const Family family = connection::address_type(address);
    if (options.family && *options.family != family)
        throw UsageError("address " + connection::to_string(address) + " does not belong to the requested family");
    if (options.max_message_size == 0) throw UsageError("max_message_size must be positive");
    const transport::SocketAddress where = transport::to_socket_address(address);
    detail::UniqueFd guard(::socket(transport::socket_family(family), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (guard.get() < 0) throw OSError("socket", errno);
    const transport::Deadline deadline = transport::Deadline::from(
        options.handshake_timeout ? std::optional<std::chrono::nanoseconds>(*options.handshake_timeout) : std::nullopt);
    connect_socket(guard.get(), where, address);
    if (options.authkey) {
        transport::Handshake handshake(transport::HandshakeRole::client, options.authkey->bytes(), options.legacy_md5);
        run_handshake(guard.get(), handshake, deadline);
    }
    Connection connection = Connection::from_fd(guard.release(), true, true);
    connection.set_max_message_size(options.max_message_size);
    return connection;
}

}  // namespace mproc
