#pragma once
// The manager's wire protocol, shared by the server and the proxies. Each request and each reply
// is one Connection message (Python's framing), its body written with the codec:
//
//   request:  u64 object id, string method, Blobs arguments (each argument encoded on its own)
//   reply:    u8 0, then the encoded result (the rest of the message)
//             u8 1, string error kind, string message, i32 errno: an error the proxy throws as
//                   the mproc exception of that kind (errno: an OSError's, else 0)
//             u8 2, string type name, string message: any other exception, a RemoteError
//
// Object id 0 is the server itself: create (type id, Blobs constructor arguments) -> u64 id,
// incref (id), decref (id), shutdown, ping -> u64 the server's instance number (ProxyToken::server).
#include <cstdint>
#include <string>
#include <string_view>

#include "mproc/connection.hpp"
#include "mproc/detail/code_ref.hpp"
#include "mproc/detail/descriptors.hpp"
#include "mproc/detail/manager_types.hpp"

namespace mproc::detail {

inline constexpr std::uint64_t kServerObject = 0;
inline constexpr std::uint8_t kReplyOk = 0;
inline constexpr std::uint8_t kReplyError = 1;
inline constexpr std::uint8_t kReplyForeign = 2;

// An error the server reports to the caller: `kind` names the mproc exception the proxy throws
// (KeyError, IndexError, ...; one raise_remote does not know is a RemoteError of that type name).
struct ServerError {
    std::string kind;
    std::string message;
    int error_number = 0;  // an OSError's errno
};

// The reply's error for an exception a method threw: an mproc exception as its kind (reply
// kReplyError), anything else (or an mproc RemoteError, which carries a type name of its own) as
// a type name and message (kReplyForeign).
struct WireError {
    bool foreign = false;
    ServerError error;
};
WireError wire_error_of(const std::exception& e);

// A token's address as an Address, and back.
Address address_of(const ProxyToken& token);
void set_address(ProxyToken& token, const Address& address);

// Throws the exception a reply's error kind and message stand for.
[[noreturn]] void raise_remote(const std::string& kind, const std::string& message, int error_number = 0);

// Turns a registered type's entry points into code references and back, so that the registry
// reaches a server started by spawn or forkserver.
struct WireMethod {
    std::string name;
    CodeRef call;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(name, call);
    }
};
struct WireType {
    std::string type_id;
    std::string class_name;
    CodeRef create;
    CodeRef destroy;
    std::vector<WireMethod> methods;
    bool shared = false;
    bool concurrent = false;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(type_id, class_name, create, destroy, methods, shared, concurrent);
    }
};
WireType to_wire(const RegisteredType& type);
RegisteredType from_wire(const WireType& wire);

// What the server process is started with.
struct ServerSettings {
    bool has_address = false;
    ProxyToken where;  // the address fields only
    std::vector<std::byte> authkey;
    std::vector<WireType> types;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(has_address, where, authkey, types);
    }
};

// Removes a server's Unix socket file and the private directory it was made in (when empty): the
// Listener cannot, since it stays open under the threads until the process ends.
void remove_socket(const Address& address);

// Removes a Unix socket file that nobody listens on any more (its server was killed), so that a
// new server can take the address: Python's restart needs a retry; TCP has SO_REUSEADDR.
void clear_stale_socket(const Address& address);

// The server's end of the socketpair it is started with. A plain descriptor, not a Connection, so
// that the owner can close its own copy once the server has it (inherited by fork, or sent with
// the start request): then the owner's end sees end of file when the server dies.
struct ServerChannel {
    int fd = -1;
    template <class Archive>
    void save(Archive& ar) const {
        ar(DescriptorRef{fd, "a manager's channel"});
    }
    template <class Archive>
    void load(Archive& ar) {
        DescriptorRef channel{-1, "a manager's channel"};
        ar(channel);
        fd = channel.fd;
    }
};

// The body of the server process: listen, send the address on the channel, serve until shutdown.
void manager_server_main(const ServerSettings& settings, const ServerChannel& channel);

}  // namespace mproc::detail
