// Listener: accept(2) plus the authkey challenge of every pending peer, run side by side.
//
// Why not one handshake at a time, as Python does: a peer that connects and says nothing would
// hold accept() until its deadline, and a few such peers would keep everyone else out. Why not a
// thread per peer, or a background thread: threads in a process that forks are a hazard (the
// fork start method copies only the calling thread), and a thread per peer lets idle peers cost
// threads. So accept() runs one poll loop over the listening socket and every pending peer, each
// peer's challenge a Handshake state machine on a non-blocking socket.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>

#include <fmt/format.h>

#include "mproc/connection.hpp"
#include "mproc/logging.hpp"
#include "transport/fd_io.hpp"
#include "transport/frame.hpp"
#include "transport/handshake.hpp"
#include "transport/socket_address.hpp"

namespace mproc {

namespace {

using Clock = std::chrono::steady_clock;

// How many connections one pass of the loop takes from the kernel's queue.
constexpr int kAcceptBatch = 64;
// After the process runs out of descriptors, how long accept(2) rests before it is tried again
// (otherwise the readable listening socket would spin the loop).
constexpr auto kDescriptorShortageRest = std::chrono::milliseconds(100);

struct PendingPeer {
    detail::UniqueFd fd;
    std::unique_ptr<transport::Handshake> handshake;
    Clock::time_point deadline;
    Address peer;
};

struct ReadyPeer {
    Connection connection;
    Address peer;
};

}  // namespace

struct Listener::Impl {
    ListenerOptions options;
    Family family = Family::af_unix;
    detail::UniqueFd fd;
    Address address;
    pid_t creator = 0;
    // The socket file this listener created (removed on close by the creating process).
    std::string socket_file;
    std::deque<PendingPeer> pending;
    std::deque<ReadyPeer> ready;
    std::deque<std::string> failures;
    std::optional<Address> last_accepted;
    Clock::time_point accept_rests_until{};

    ~Impl() { close(); }

    void close() noexcept {
        pending.clear();
        ready.clear();
        failures.clear();
        if (fd) {
            fd.reset();
            if (!socket_file.empty() && creator == ::getpid()) ::unlink(socket_file.c_str());
        }
    }

    void open();
    std::optional<Connection> accept(std::optional<std::chrono::nanoseconds> timeout);
    void accept_new_peers(Clock::time_point now);
    void admit(int peer_fd, Address peer, Clock::time_point now);
    // Moves a pending peer's handshake forward; false once the peer has left the pending table
    // (authenticated, failed or gone) and its slot should be erased.
    bool progress(PendingPeer& p);
    void make_ready(int peer_fd, Address peer);
};

void Listener::Impl::open() {
    if (options.backlog < 0) throw UsageError("backlog must not be negative");
    if (options.max_pending_handshakes == 0) throw UsageError("max_pending_handshakes must be positive");
    if (options.max_message_size == 0) throw UsageError("max_message_size must be positive");
    if (options.address) {
        family = connection::address_type(*options.address);
        if (options.family && *options.family != family)
            throw UsageError(fmt::format("address {} does not belong to the requested family",
                                         connection::to_string(*options.address)));
        address = *options.address;
    } else {
        family = options.family.value_or(connection::default_family);
        address = connection::arbitrary_address(family);
    }
    if (family == Family::af_inet && !options.authkey && !options.allow_unauthenticated_tcp)
        throw UsageError(
            "a TCP listener without an authkey accepts messages from anyone who can reach its port; give it an "
            "authkey, or set allow_unauthenticated_tcp");
    const bool abstract = transport::is_abstract(address);
    if (abstract && !options.allow_abstract_namespace)
        throw UsageError(
            "abstract AF_UNIX names have no file permissions, so any process can connect; use a path, or set "
            "allow_abstract_namespace");

    const transport::SocketAddress where = transport::to_socket_address(address);
    detail::UniqueFd guard(::socket(transport::socket_family(family), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (guard.get() < 0) throw OSError("socket", errno);
    if (family == Family::af_inet) {
        const int on = 1;  // as Python: a restarted server can bind while old connections linger
        if (::setsockopt(guard.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0) throw OSError("setsockopt", errno);
    }
    if (::bind(guard.get(), where.get(), where.length) < 0)
        throw OSError("bind(" + connection::to_string(address) + ")", errno);
    const auto& path = family == Family::af_unix ? std::get<UnixAddress>(address).path : std::string();
    if (family == Family::af_unix && !abstract) {
        socket_file = path;
        // Before listen(2): until then a connect() is refused, so no one gets in with the mode
        // the umask gave the file.
        if (::chmod(path.c_str(), 0600) < 0) {
            const int error = errno;
            ::unlink(path.c_str());
            socket_file.clear();
            throw OSError("chmod(" + path + ")", error);
        }
    }
    if (::listen(guard.get(), options.backlog) < 0) {
        const int error = errno;
        if (!socket_file.empty()) ::unlink(socket_file.c_str());
        socket_file.clear();
        throw OSError("listen", error);
    }
    if (family == Family::af_inet) {
        transport::SocketAddress bound;
        bound.length = sizeof bound.storage;
        if (::getsockname(guard.get(), bound.get(), &bound.length) < 0) throw OSError("getsockname", errno);
        // As Python: the bound address, numeric, with the port the kernel chose for port 0.
        address = transport::from_socket_address(bound, family);
    }
    transport::set_nonblocking(guard.get(), true);
    creator = ::getpid();
    fd = std::move(guard);
}

void Listener::Impl::make_ready(int peer_fd, Address peer) {
    detail::UniqueFd guard(peer_fd);
    transport::set_nonblocking(peer_fd, false);
    Connection connection = Connection::from_fd(guard.release(), true, true);
    connection.set_max_message_size(options.max_message_size);
    ready.push_back(ReadyPeer{std::move(connection), std::move(peer)});
}

void Listener::Impl::admit(int peer_fd, Address peer, Clock::time_point now) {
    if (!options.authkey) {
        make_ready(peer_fd, std::move(peer));
        return;
    }
    if (pending.size() >= options.max_pending_handshakes) {
        // The oldest pending peer has had the most time to answer and has not.
        get_logger().debug("Listener: dropping the oldest pending peer ({}) to admit a new one",
                           connection::to_string(pending.front().peer));
        pending.pop_front();
    }
    PendingPeer p;
    p.fd.reset(peer_fd);
    p.handshake = std::make_unique<transport::Handshake>(transport::HandshakeRole::server, options.authkey->bytes(),
                                                         options.legacy_md5);
    p.deadline = now + options.handshake_timeout;
    p.peer = std::move(peer);
    pending.push_back(std::move(p));
    if (!progress(pending.back())) pending.pop_back();
}

bool Listener::Impl::progress(PendingPeer& p) {
    // Room for the largest handshake frame; the machine never asks for more than one frame part.
    std::byte buffer[transport::kMaxHeaderSize + kMaxHandshakeMessageSize];
    auto drop = [&p] {
        p.fd.reset();
        return false;
    };
    try {
        for (;;) {
            while (!p.handshake->output().empty()) {
                const std::ptrdiff_t n = transport::write_some(p.fd.get(), true, p.handshake->output(), {}, "handshake");
                if (n == transport::kWouldBlock) return true;
                p.handshake->consume_output(static_cast<std::size_t>(n));
            }
            if (p.handshake->done()) {
                make_ready(p.fd.release(), std::move(p.peer));
                return false;
            }
            const std::size_t want = p.handshake->wanted();
            const std::ptrdiff_t n = transport::read_some(p.fd.get(), std::span(buffer, want), "handshake");
            if (n == transport::kWouldBlock) return true;
            if (n == 0) return drop();  // left before authenticating: nothing to report
            try {
                p.handshake->feed(std::span(buffer, static_cast<std::size_t>(n)));
            } catch (const AuthenticationError& e) {
                // Tell the peer (#FAILURE#) if the socket takes it now; never wait for it.
                const auto rest = p.handshake->output();
                if (!rest.empty()) {
                    try {
                        transport::write_some(p.fd.get(), true, rest, {}, "handshake");
                    } catch (const OSError&) {
                    }
                }
                failures.push_back(e.what());
                return drop();
            }
        }
    } catch (const OSError& e) {
        get_logger().debug("Listener: pending peer {} failed: {}", connection::to_string(p.peer), e.what());
        return drop();
    }
}

void Listener::Impl::accept_new_peers(Clock::time_point now) {
    for (int i = 0; i < kAcceptBatch; ++i) {
        transport::SocketAddress peer;
        peer.length = sizeof peer.storage;
        const int peer_fd = ::accept4(fd.get(), peer.get(), &peer.length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (peer_fd < 0) {
            switch (errno) {
                case EAGAIN:
#if EWOULDBLOCK != EAGAIN
                case EWOULDBLOCK:
#endif
                    return;
                case EINTR:
                case ECONNABORTED:
                case EPROTO:
                    continue;
                case EMFILE:
                case ENFILE:
                case ENOBUFS:
                case ENOMEM:
                    get_logger().warning("Listener: accept failed ({}); retrying shortly", std::strerror(errno));
                    accept_rests_until = now + kDescriptorShortageRest;
                    return;
                default:
                    throw OSError("accept", errno);
            }
        }
        admit(peer_fd, transport::from_socket_address(peer, family), now);
    }
}

std::optional<Connection> Listener::Impl::accept(std::optional<std::chrono::nanoseconds> timeout) {
    if (!fd) throw OSError("listener is closed");
    const transport::Deadline deadline = transport::Deadline::from(timeout);
    std::vector<pollfd> watched;
    for (;;) {
        if (!ready.empty()) {
            ReadyPeer next = std::move(ready.front());
            ready.pop_front();
            last_accepted = std::move(next.peer);
            return std::move(next.connection);
        }
        if (!failures.empty()) {
            const std::string why = std::move(failures.front());
            failures.pop_front();
            throw AuthenticationError(why);
        }

        Clock::time_point now = Clock::now();
        const bool accepting = now >= accept_rests_until;
        // The wait ends at the deadline, or earlier when accepting resumes or a peer's time is up.
        detail::Timeout left = deadline.remaining();
        auto wake_by = [&left, now](Clock::time_point when) {
            const auto until = std::max(std::chrono::nanoseconds::zero(),
                                        std::chrono::duration_cast<std::chrono::nanoseconds>(when - now));
            left = left ? std::min(*left, until) : until;
        };
        if (!accepting) wake_by(accept_rests_until);
        watched.clear();
        watched.push_back(pollfd{accepting ? fd.get() : -1, POLLIN, 0});
        for (const PendingPeer& p : pending) {
            watched.push_back(pollfd{p.fd.get(), static_cast<short>(p.handshake->output().empty() ? POLLIN : POLLOUT), 0});
            wake_by(p.deadline);
        }
        timespec ts{};
        if (left) {
            const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(*left);
            ts = timespec{static_cast<time_t>(seconds.count()), static_cast<long>((*left - seconds).count())};
        }
        const int n = ::ppoll(watched.data(), watched.size(), left ? &ts : nullptr, nullptr);
        if (n < 0 && errno != EINTR) throw OSError("poll", errno);
        now = Clock::now();

        if (n > 0) {
            // Pending peers first: one whose answer is waiting completes even if its deadline
            // passed while no one was inside accept().
            for (std::size_t i = 1; i < watched.size(); ++i) {
                if (watched[i].revents == 0) continue;
                PendingPeer& p = pending[i - 1];
                if (!progress(p)) p.fd.reset();
            }
            std::erase_if(pending, [](const PendingPeer& p) { return !p.fd; });
            if (watched[0].revents != 0) accept_new_peers(now);
        }
        std::erase_if(pending, [now](PendingPeer& p) {
            if (p.deadline > now) return false;
            get_logger().debug("Listener: peer {} did not complete the authentication handshake in time",
                               connection::to_string(p.peer));
            return true;
        });
        if (ready.empty() && failures.empty() && deadline.passed()) return std::nullopt;
    }
}

Listener::Listener(ListenerOptions options) : impl_(std::make_unique<Impl>()) {
    impl_->options = std::move(options);
    impl_->open();
}

Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&&) noexcept = default;
Listener::~Listener() = default;

Connection Listener::accept() { return std::move(*accept_for(std::nullopt)); }

std::optional<Connection> Listener::accept_for(std::optional<std::chrono::nanoseconds> timeout) {
    if (!impl_) throw OSError("listener is closed");
    return impl_->accept(timeout);
}

void Listener::close() noexcept {
    if (impl_) impl_->close();
}

bool Listener::closed() const noexcept { return !impl_ || !impl_->fd; }

const Address& Listener::address() const {
    if (!impl_) throw OSError("listener is closed");
    return impl_->address;
}

const std::optional<Address>& Listener::last_accepted() const {
    if (!impl_) throw OSError("listener is closed");
    return impl_->last_accepted;
}

}  // namespace mproc
