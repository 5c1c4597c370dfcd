#pragma once
// Connections between processes: Pipe(), Connection, connection::wait(), Listener and Client
// (Python's multiprocessing.Pipe and multiprocessing.connection).
//
//   auto [parent_end, child_end] = mproc::Pipe();
//   mproc::Process child([&child_end] { child_end.send(std::string("hello")); });
//   child.start();
//   child_end.close();                              // the parent's copy; the child keeps its own
//   std::string greeting = parent_end.recv<std::string>();
//
//   mproc::Listener listener({.address = mproc::TcpAddress{"127.0.0.1", 6000}, .authkey = key});
//   mproc::Connection conn = listener.accept();      // only authenticated peers come out of it
//   conn.send_bytes("welcome");
//
// A Connection sends and receives messages over a file descriptor: a socketpair (duplex Pipe),
// a pipe (Pipe(false)), a Unix or TCP socket (Listener, Client). Each message is framed exactly
// as Python frames it: a 4-byte big-endian signed length, or -1 followed by an 8-byte length for
// messages over 0x7fffffff bytes, then the payload. So send_bytes/recv_bytes interoperate with a
// Python peer, and Listener/Client speak Python's authkey challenge (below).
//
// How it differs from Python, by design:
//  - Values are typed: send(const T&) encodes with mproc's codec (codec.hpp) and recv<T>() names
//    the type it expects; nothing received can run code. send/recv are not compatible with
//    Python's pickle-based send/recv; send_bytes/recv_bytes are.
//  - Limits: every connection has a maximum message size (kDefaultMaxMessageSize unless set). A
//    peer announcing a longer message gets a ProtocolError before anything is allocated, and
//    memory for a message grows with the bytes actually received, so a lying length costs
//    nothing. Python allocates whatever length the peer announces.
//  - Hostile bytes: a negative length other than -1 (Python reads it as an empty message and
//    loses its place in the stream), a frame cut short by end of file, a length over the limit
//    or over recv_bytes' maxlength: each closes the connection and throws ProtocolError, naming
//    the cause. A received message that does not decode as the requested type closes the
//    connection too and throws DecodeError. Nothing else in the process is disturbed.
//  - A peer that closed its end: recv*() throws EOFError (Python's EOFError) when no message is
//    left; send*() throws OSError with code EPIPE (Python's BrokenPipeError). The process is never
//    killed by SIGPIPE, whatever its disposition: sockets are written with MSG_NOSIGNAL, pipes
//    with SIGPIPE blocked for the calling thread during the write.
//  - Using a closed connection, or the wrong end of a one-way Pipe, throws OSError with Python's
//    text ("handle is closed", "connection is write-only", "connection is read-only"; code() is
//    empty), as Python raises OSError. A bad offset or size throws UsageError with Python's
//    message ("buffer length < offset", ...), where Python raises ValueError.
//  - Timeouts are std::chrono durations; poll(std::nullopt) waits forever (Python: poll(None)).
//  - Connection owns its descriptor. Copying one duplicates the descriptor (each copy closes its
//    own), so the same end can be given to several processes, as in Python. from_fd() adopts a
//    descriptor and detach() gives it up.
//  - A Connection given to a Process as an argument reaches the child under every start method:
//    inherited under fork, its descriptor sent with the start request (SCM_RIGHTS) under spawn
//    and forkserver, as Python pickles a Connection for a child. Anywhere else it cannot be
//    encoded (sending a Connection through a Connection is a UsageError). Under fork a child
//    also inherits every other connection its parent had, as in Python; close the ends each
//    process does not use, or end of file is never seen.
//
// Authentication (Listener and Client with an authkey): both sides prove they know the key
// without sending it, by HMAC over a challenge. Each side challenges the other (the listener
// first), exactly as Python's deliver_challenge/answer_challenge do:
//  - by default, Python 3.12's protocol: "#CHALLENGE#{sha256}" + 40 bytes from getrandom(2),
//    answered with "{sha256}" + HMAC-SHA256 over the whole challenge; a peer may answer with
//    sha384, sha3_256 or sha3_384 instead, as Python allows. Digests are compared in constant
//    time (CRYPTO_memcmp).
//  - Python 3.11 and earlier only speak HMAC-MD5 (a 20-byte challenge, a raw 16-byte answer).
//    mproc refuses MD5 in either direction, "{md5}" answers included, unless legacy_md5 is set
//    in the options; Python 3.12 accepts MD5 answers silently, which lets an attacker in the
//    middle downgrade the digest.
//  - Failures throw AuthenticationError with Python's texts: "digest received was wrong" on the
//    side that checked, "digest sent was rejected" on the side that answered.
//  - Before authentication no message longer than 256 bytes is accepted (Python's cap), and the
//    listener gives each peer a deadline (ListenerOptions::handshake_timeout).
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/authkey.hpp"
#include "mproc/codec.hpp"
#include "mproc/detail/codec_handover.hpp"
#include "mproc/detail/connection_wait.hpp"
#include "mproc/detail/descriptors.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/errors.hpp"

namespace mproc {

// The default largest message a connection accepts: 1 GiB. Python has no limit; raise it with
// Connection::set_max_message_size or the options' max_message_size (up to 2^63 - 1) for
// larger messages.
inline constexpr std::size_t kDefaultMaxMessageSize = std::size_t{1} << 30;

// The largest handshake message read before a peer is authenticated (Python's 256-byte cap).
inline constexpr std::size_t kMaxHandshakeMessageSize = 256;


// One end of a message channel (Python: multiprocessing.connection.Connection).
//
// Not thread-safe: two threads (or two processes sharing a descriptor after fork) using the same
// end at the same time can interleave frames, as in Python. Sending from one thread while
// another receives on the same duplex end is fine.
class Connection {
public:
    // A closed connection: a place to move a real one into.
    Connection() noexcept = default;

    // Adopts `fd`, which must be open; the Connection closes it. At least one of `readable` and
    // `writable` must be true. Works for sockets, pipes and anything read(2)/write(2) work on.
    static Connection from_fd(int fd, bool readable = true, bool writable = true);

    Connection(Connection&& other) noexcept;
    Connection& operator=(Connection&& other) noexcept;
    // A copy owns a duplicate of the descriptor (fcntl F_DUPFD_CLOEXEC): both reach the same
    // channel, and each must be closed (or destroyed) before the peer sees end of file. This is
    // what lets one end be given to several processes, as Python passes the same Connection to
    // any number of Process objects: `Process(worker, conn)` copies it. A copy of a closed
    // connection is closed. OSError when the descriptor table is full.
    Connection(const Connection& other);
    Connection& operator=(const Connection& other);
    ~Connection();

    // Sends `value` as one message, encoded with the codec (Python: send, which pickles).
    template <class T>
        requires Encodable<T>
    void send(const T& value) {
        check_writable();
        // The value is encoded after room for the length, so that the frame leaves in one piece.
        send_scratch_.assign(kFrameLengthSize, std::byte{0});
        detail::HandoverTransaction handover;  // what the value hands over stays here if the send fails
        encode_into(send_scratch_, value);
        send_framed_scratch();
        handover.commit();
        trim_scratch(send_scratch_);
    }

    // Receives one message and decodes it as a T (Python: recv). EOFError when the peer has
    // closed and nothing is left; DecodeError (the connection is then closed) when the message
    // is not a T.
    template <class T>
        requires Encodable<T>
    T recv() {
        std::span<const std::byte> message = recv_frame_into_scratch(fixed_encoded_size<T>());
        try {
            T value = loads<T>(message);
            trim_scratch(recv_scratch_);
            return value;
        } catch (const DecodeError&) {
            close();
            throw;
        }
    }

    // Sends bytes [offset, offset + size) of `data` as one message (size: to the end).
    // UsageError when the range is outside `data`, with Python's messages.
    void send_bytes(std::span<const std::byte> data, std::size_t offset = 0,
                    std::optional<std::size_t> size = std::nullopt);
    // The bytes of a string (without a terminating NUL).
    void send_bytes(std::string_view text, std::size_t offset = 0, std::optional<std::size_t> size = std::nullopt) {
        send_bytes(std::as_bytes(std::span(text.data(), text.size())), offset, size);
    }
    // The bytes of any contiguous range of trivially copyable elements (a buffer of any kind,
    // as Python accepts any object with the buffer protocol); offset and size count bytes.
    template <std::ranges::contiguous_range R>
        requires std::is_trivially_copyable_v<std::ranges::range_value_t<R>> &&
                 (!std::convertible_to<const R&, std::string_view>) &&
                 (!std::convertible_to<const R&, std::span<const std::byte>>)
    void send_bytes(const R& data, std::size_t offset = 0, std::optional<std::size_t> size = std::nullopt) {
        send_bytes(std::as_bytes(std::span(std::ranges::data(data), std::ranges::size(data))), offset, size);
    }

    // Receives one whole message. With `maxlength`, a longer message closes the connection and
    // throws ProtocolError("bad message length ...") before it is read (Python: OSError).
    std::vector<std::byte> recv_bytes(std::optional<std::size_t> maxlength = std::nullopt);

    // Receives one message into `buffer` from `offset` on and returns its length. A message
    // longer than the space left throws BufferTooShort carrying the whole message; the
    // connection stays usable.
    std::size_t recv_bytes_into(std::span<std::byte> buffer, std::size_t offset = 0);
    template <std::ranges::contiguous_range R>
        requires std::is_trivially_copyable_v<std::ranges::range_value_t<R>> &&
                 (!std::is_const_v<std::remove_reference_t<std::ranges::range_reference_t<R>>>) &&
                 (!std::convertible_to<R&, std::span<std::byte>>)
    std::size_t recv_bytes_into(R& buffer, std::size_t offset = 0) {
        return recv_bytes_into(std::as_writable_bytes(std::span(std::ranges::data(buffer), std::ranges::size(buffer))),
                               offset);
    }

    // Whether a message (or end of file) is waiting to be read: poll() does not wait, poll(d)
    // waits at most d, poll(std::nullopt) waits until there is one (Python: poll(timeout=0.0)).
    bool poll() { return poll_for(std::chrono::nanoseconds::zero()); }
    template <class Rep, class Period>
    bool poll(std::chrono::duration<Rep, Period> timeout) {
        return poll_for(detail::to_timeout(timeout));
    }
    bool poll(std::nullopt_t) { return poll_for(std::nullopt); }

    // Closes the descriptor; later calls do nothing. Python: close(), and leaving a `with` block.
    void close() noexcept;
    bool closed() const noexcept { return fd_ < 0; }
    bool readable() const noexcept { return readable_; }
    bool writable() const noexcept { return writable_; }

    // The descriptor, still owned by the Connection; OSError("handle is closed") once closed.
    int fileno() const;
    // Gives up the descriptor without closing it and leaves the Connection closed.
    int detach();

    std::size_t max_message_size() const noexcept { return max_message_size_; }
    void set_max_message_size(std::size_t bytes);

    // How a Connection travels to a child as a Process argument (see above): the descriptor out
    // of band, the flags and the limit in the start request.
    template <class Archive>
    void save(Archive& ar) const {
        ar(detail::DescriptorRef{fd_, "a Connection"}, readable_, writable_,
           static_cast<std::uint64_t>(max_message_size_));
    }
    template <class Archive>
    void load(Archive& ar) {
        detail::DescriptorRef descriptor{-1, "a Connection"};
        bool readable = false;
        bool writable = false;
        std::uint64_t max_size = 0;
        ar(descriptor, readable, writable, max_size);
        Connection received(descriptor.fd, readable || !writable, writable);
        if (max_size > 0) received.max_message_size_ = static_cast<std::size_t>(max_size);
        *this = std::move(received);
    }

private:
    // The 4-byte length that starts every frame under 2 GiB.
    static constexpr std::size_t kFrameLengthSize = 4;
    // The largest fixed-size value recv<T> reads together with its length.
    static constexpr std::size_t kMaxFixedReadAhead = 64;

    Connection(int fd, bool readable, bool writable);

    void check_open() const;
    void check_readable() const;
    void check_writable() const;
    void send_frame(std::span<const std::byte> payload);
    // Sends send_scratch_, whose first kFrameLengthSize bytes are room for the length.
    void send_framed_scratch();
    // Receives one frame into recv_scratch_. With `expected_size`, the length and up to that many
    // payload bytes are asked for in one read; this never reads past a frame of that size, and a
    // frame of another size cannot decode as the fixed-size type asked for.
    std::span<const std::byte> recv_frame_into_scratch(std::size_t expected_size);
    bool poll_for(std::optional<std::chrono::nanoseconds> timeout);
    static void trim_scratch(std::vector<std::byte>& scratch) noexcept;

    // The size of T's encoding when the codec always writes the same number of bytes for it
    // (numbers, enums, trivially copyable structs: their object representation; bool: one byte)
    // and it is small; 0 otherwise. recv<T> then reads the length and the value with one system
    // call, which matters for the latency of small messages (a read costs as much as the copy).
    template <class T>
    static constexpr std::size_t fixed_encoded_size() {
        std::size_t size = 0;
        if constexpr (detail::is_plain<T>())
            size = sizeof(T);
        else if constexpr (detail::codec_kind<T>() == detail::CodecKind::boolean)
            size = 1;
        return size <= kMaxFixedReadAhead ? size : 0;
    }

    friend struct ConnectionAccess;

    int fd_ = -1;
    bool readable_ = false;
    bool writable_ = false;
    bool is_socket_ = false;
    std::size_t max_message_size_ = kDefaultMaxMessageSize;
    // Reused by send<T>/recv<T> so that a steady stream of typed messages allocates nothing.
    std::vector<std::byte> send_scratch_;
    std::vector<std::byte> recv_scratch_;
};

// A pair of connected Connections (Python: Pipe(duplex=True)). Duplex: a socketpair, both ends
// send and receive. Not duplex: a pipe; the first end only receives, the second only sends.
std::pair<Connection, Connection> Pipe(bool duplex = true);

// Where a Listener listens and a Client connects. The alternative held is the family, as
// Python deduces it from the address (a path: AF_UNIX; a (host, port) tuple: AF_INET).
// Addresses are Encodable (codec.hpp), as Python's are picklable: a Process under any start
// method, a Queue or a Connection can carry one to another process.
struct UnixAddress {
    UnixAddress() = default;
    UnixAddress(std::string socket_path) : path(std::move(socket_path)) {}
    UnixAddress(std::string_view socket_path) : path(socket_path) {}
    UnixAddress(const char* socket_path) : path(socket_path) {}

    std::string path;  // a filesystem path; a leading '\0' names Linux's abstract namespace
    friend bool operator==(const UnixAddress&, const UnixAddress&) = default;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(path);
    }
};

struct TcpAddress {
    std::string host = "127.0.0.1";  // IPv4 address or host name; "" is every interface
    std::uint16_t port = 0;          // 0: a free port chosen by the kernel (Listener)
    friend bool operator==(const TcpAddress&, const TcpAddress&) = default;

    template <class Archive>
    void serialize(Archive& ar) {
        ar(host, port);
    }
};

using Address = std::variant<UnixAddress, TcpAddress>;

// Python's family names: 'AF_UNIX', 'AF_INET' (Windows' 'AF_PIPE' has no equivalent here).
enum class Family { af_unix, af_inet };

namespace connection {

inline constexpr Family default_family = Family::af_unix;
inline constexpr std::array<Family, 2> families = {Family::af_unix, Family::af_inet};

// The family of an address (Python: address_type).
Family address_type(const Address& address) noexcept;

// A fresh address to listen on (Python: arbitrary_address): for AF_UNIX a path inside a new
// private (0700) temporary directory, which the Listener removes when it closes; for AF_INET
// 127.0.0.1 with port 0.
Address arbitrary_address(Family family);

// "/tmp/mproc-x/listener-y", "127.0.0.1:6000"; an abstract name shows as "@name".
std::string to_string(const Address& address);

}  // namespace connection

struct ListenerOptions {
    // Unset: connection::arbitrary_address(family).
    std::optional<Address> address{};
    // Unset: deduced from the address, else connection::default_family. A family that does
    // not match the address is a UsageError.
    std::optional<Family> family{};
    // listen(2)'s backlog. Python's default is 1; a larger one costs nothing and keeps a burst of
    // clients from being refused while accept() is busy.
    int backlog = 64;
    // Unset: peers are not authenticated (Python: authkey=None). An empty key authenticates
    // with an empty key, as Python 3.13 does.
    std::optional<AuthKey> authkey{};
    // A TCP listener without an authkey lets anyone who can reach the port send it messages;
    // it is refused unless this is set.
    bool allow_unauthenticated_tcp = false;
    // Abstract AF_UNIX names ("\0name") have no file permissions: any process in the network
    // namespace can connect. Refused unless this is set.
    bool allow_abstract_namespace = false;
    // Accept peers that only speak HMAC-MD5 (Python 3.11 and earlier).
    bool legacy_md5 = false;
    // How long a peer has, from accept(2), to complete the challenge before it is disconnected.
    std::chrono::milliseconds handshake_timeout{5000};
    // How many peers may be in the middle of the challenge at once. When a new peer arrives with
    // the table full, the oldest pending one is disconnected: idle connections cannot keep real
    // clients out, they only push each other out.
    std::size_t max_pending_handshakes = 64;
    // For the accepted connections.
    std::size_t max_message_size = kDefaultMaxMessageSize;
};

// A listening socket that hands out Connections (Python: multiprocessing.connection.Listener).
//
// accept() never waits on one peer: the handshakes of all peers in the middle of the challenge
// run side by side inside accept(), without threads, each with its deadline, so an idle or slow
// peer delays nobody. accept() returns the first peer to complete the challenge. Handshakes make
// progress only while some thread is inside accept().
//
// An AF_UNIX listener creates its socket file with mode 0600 (before listen(2), so no other user
// can connect at any moment) and removes it when it closes, in the process that created it only
// (a forked child closing its copy leaves it alone, as Python's finalizer does).
//
// Not thread-safe: one accept() at a time.
class Listener {
public:
    // Binds and listens. UsageError for a refused configuration (TCP without authkey, abstract
    // name, family mismatch); OSError when the OS refuses (address in use, path too long...).
    explicit Listener(ListenerOptions options = {});
    Listener(Listener&&) noexcept;
    Listener& operator=(Listener&&) noexcept;
    ~Listener();

    // The next authenticated connection. A peer that fails the challenge makes accept() throw
    // AuthenticationError, as in Python; the listener stays usable and the other pending peers
    // keep their place. Peers that disconnect or time out before answering are dropped quietly.
    Connection accept();
    // As accept(), waiting at most `timeout`; nullopt when no peer completed in time.
    template <class Rep, class Period>
    std::optional<Connection> accept(std::chrono::duration<Rep, Period> timeout) {
        return accept_for(detail::to_timeout(timeout));
    }

    // Stops listening, disconnects pending peers, removes the socket file. Idempotent. accept()
    // on a closed (or moved-from) Listener throws OSError("listener is closed"), as in Python;
    // address() and last_accepted() stay readable after close().
    void close() noexcept;
    bool closed() const noexcept;

    // The address listened on, with the port the kernel chose when 0 was asked for (an Address is
    // Encodable: give it to a child, under any start method, to connect a Client).
    const Address& address() const;
    // The peer address of the last connection accept() returned (for AF_UNIX usually an empty
    // path: clients' sockets are unnamed); nullopt before the first.
    const std::optional<Address>& last_accepted() const;

private:
    std::optional<Connection> accept_for(std::optional<std::chrono::nanoseconds> timeout);
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

struct ClientOptions {
    // Unset: deduced from the address. A family that does not match is a UsageError.
    std::optional<Family> family{};
    // Unset: no challenge (Python: authkey=None); set it when the listener has one.
    std::optional<AuthKey> authkey{};
    // Answer, and accept answers to, Python 3.11's HMAC-MD5 challenge.
    bool legacy_md5 = false;
    // Unset: wait for the listener as long as it takes, as Python does (a listener only answers
    // from inside its accept()). Set: TimeoutError when the challenge is not complete in time.
    std::optional<std::chrono::milliseconds> handshake_timeout{};
    std::size_t max_message_size = kDefaultMaxMessageSize;
};

// Connects to a Listener (Python's or mproc's) and, with an authkey, runs the challenge.
// AuthenticationError when it fails; OSError when the connection is refused.
Connection Client(const Address& address, ClientOptions options = {});

namespace connection {

namespace detail {
inline int waitable_fd(const Connection& connection) { return connection.fileno(); }
}  // namespace detail

// What connection::wait() accepts: a descriptor (int: a raw fd or a Process::sentinel()), a
// Connection, a Process (its sentinel), anything with fileno(), and pointers, reference_wrappers
// and variants of these.
template <class T>
concept Waitable = requires(const T& object) { detail::waitable_fd(object); };

// What wait() returns for a range: copies of the ready elements (descriptors, pointers,
// Processes), or pointers to them for Connections and elements that cannot be copied.
template <class R>
using WaitResult = std::conditional_t<detail::wait_returns_copies<std::ranges::range_value_t<R>>,
                                      std::ranges::range_value_t<R>,
                                      std::add_pointer_t<std::ranges::range_reference_t<R>>>;

// Waits until at least one object is ready and returns the ready ones, in their order in
// `objects` (Python: multiprocessing.connection.wait). A connection is ready when a message or
// end of file is waiting; a Process (or its sentinel) when it has ended; a descriptor when it is
// readable or hung up. Without a timeout it waits as long as it takes; with one it may return an
// empty vector. UsageError for an empty list without a timeout (it would never return; Python
// waits forever); OSError for a descriptor that is not open, OSError("handle is closed") for a
// closed Connection.
//
//   std::vector<mproc::Connection*> readers = {&a, &b};
//   for (mproc::Connection* ready : mproc::connection::wait(readers)) ready->recv<int>();
template <std::ranges::forward_range R>
    requires Waitable<std::ranges::range_value_t<R>>
auto wait(R&& objects, std::optional<std::chrono::nanoseconds> timeout) {
    using Element = std::ranges::range_value_t<R>;
    std::vector<int> fds;
    for (const auto& object : objects) fds.push_back(detail::waitable_fd(object));
    const std::vector<std::size_t> ready = detail::wait_ready(fds, timeout);
    std::vector<WaitResult<R>> result;
    result.reserve(ready.size());
    std::size_t index = 0;
    auto next = ready.begin();
    for (auto& object : objects) {
        if (next == ready.end()) break;
        if (*next == index) {
            if constexpr (detail::wait_returns_copies<Element>) {
                result.push_back(object);
            } else {
                result.push_back(&object);
            }
            ++next;
        }
        ++index;
    }
    return result;
}
template <std::ranges::forward_range R>
    requires Waitable<std::ranges::range_value_t<R>>
auto wait(R&& objects) {
    return wait(std::forward<R>(objects), std::optional<std::chrono::nanoseconds>());
}
template <std::ranges::forward_range R, class Rep, class Period>
    requires Waitable<std::ranges::range_value_t<R>>
auto wait(R&& objects, std::chrono::duration<Rep, Period> timeout) {
    return wait(std::forward<R>(objects), mproc::detail::to_timeout(timeout));
}
// wait({&a, &b}), wait({fd1, fd2}, 1s): a braced list of objects of one type.
template <class T>
    requires Waitable<T> && detail::wait_returns_copies<T>
std::vector<T> wait(std::initializer_list<T> objects) {
    return wait(std::span<const T>(objects.begin(), objects.size()), std::optional<std::chrono::nanoseconds>());
}
template <class T, class Rep, class Period>
    requires Waitable<T> && detail::wait_returns_copies<T>
std::vector<T> wait(std::initializer_list<T> objects, std::chrono::duration<Rep, Period> timeout) {
    return wait(std::span<const T>(objects.begin(), objects.size()), mproc::detail::to_timeout(timeout));
}

}  // namespace connection

}  // namespace mproc
