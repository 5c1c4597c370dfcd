// The manager's server: accepts clients, serves each on a thread of its own, keeps the objects
// and their reference counts.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cxxabi.h>

#include <cerrno>
#include <cstring>

#include <exception>
#include <random>
#include <thread>
#include <typeinfo>

#include <fmt/format.h>

#include "base/unique_fd.hpp"
#include "managers/protocol.hpp"
#include "managers/server_state.hpp"
#include "managers/wire.hpp"
#include "mproc/logging.hpp"
#include "mproc/managers.hpp"
#include "process/process_access.hpp"

namespace mproc::detail {

std::string type_name_of(const std::type_info& type) { return unqualified_type_name(type); }

void check_same_program(std::string_view sender, std::string_view what) {
    if (sender != executable_identity())
        throw ServerError{"UsageError", fmt::format("{} is code of another program than the manager's server: it can "
                                                    "only be given by a client that runs the same program",
                                                    what)};
}

void check_argument_count(std::string_view what, std::size_t expected, std::size_t given) {
    if (expected != given)
        throw ServerError{"UsageError", fmt::format("{} takes {} argument{} ({} given)", what, expected,
                                                    expected == 1 ? "" : "s", given)};
}

Address address_of(const ProxyToken& token) {
    if (token.family == 1) return TcpAddress{token.location, token.port};
    return UnixAddress{token.location};
}

void set_address(ProxyToken& token, const Address& address) {
    if (const auto* tcp = std::get_if<TcpAddress>(&address)) {
        token.family = 1;
        token.location = tcp->host;
        token.port = tcp->port;
    } else {
        token.family = 0;
        token.location = std::get<UnixAddress>(address).path;
        token.port = 0;
    }
}

WireType to_wire(const RegisteredType& type) {
    WireType wire{type.type_id, type.class_name, code_ref_of_function(type.create), code_ref_of_function(type.destroy),
                  {}, type.shared, type.concurrent};
    for (const auto& method : type.methods) wire.methods.push_back({method.name, code_ref_of_function(method.call)});
    return wire;
}

RegisteredType from_wire(const WireType& wire) {
    RegisteredType type{wire.type_id, wire.class_name, resolve_function<void*(const Blobs&)>(wire.create),
                        resolve_function<void(void*)>(wire.destroy), {}, wire.shared, wire.concurrent};
    for (const auto& method : wire.methods)
        type.methods.push_back({method.name, resolve_function<Blob(void*, const Blobs&)>(method.call)});
    return type;
}

namespace {

template <class E>
bool is_a(const std::exception& e) {
    return dynamic_cast<const E*>(&e) != nullptr;
}

// The kind raise_remote throws again, for the mproc exceptions that a kind and a message make
// whole; the most derived first. Empty when there is none.
std::string mproc_kind_of(const std::exception& e) {
    if (is_a<ManagerDiedError>(e)) return "ManagerDiedError";
    if (is_a<EOFError>(e)) return "EOFError";
    if (is_a<UsageError>(e)) return "UsageError";
    if (is_a<DecodeError>(e)) return "DecodeError";
    if (is_a<TimeoutError>(e)) return "TimeoutError";
    if (is_a<ProtocolError>(e)) return "ProtocolError";
    if (is_a<AuthenticationError>(e)) return "AuthenticationError";
    if (is_a<BrokenBarrierError>(e)) return "BrokenBarrierError";
    if (is_a<KeyError>(e)) return "KeyError";
    if (is_a<IndexError>(e)) return "IndexError";
    if (is_a<ValueError>(e)) return "ValueError";
    if (is_a<AttributeError>(e)) return "AttributeError";
    if (is_a<Empty>(e)) return "Empty";
    if (is_a<Full>(e)) return "Full";
    // Other ProcessErrors carry more than a message (BufferTooShort's bytes, OwnerDiedError's
    // hold on a lock, WorkerLostError's pid) or are the user's own: they travel by type name.
    if (typeid(e) == typeid(ProcessError)) return "ProcessError";
    return {};
}

// A random instance number, never 0 (0 stands for "not known" in a token).
std::uint64_t draw_instance_number() {
    std::random_device device;
    std::uint64_t number = 0;
    while (number == 0) number = (std::uint64_t{device()} << 32) ^ device();
    return number;
}

// The reply that reports `error` (kind kReplyError or kReplyForeign).
void error_reply(std::vector<std::byte>& reply, std::uint8_t kind, const ServerError& error) {
    reply.assign(kFrameHeader, std::byte{0});
    reply.push_back(std::byte{kind});
    encode_into(reply, error.kind);
    encode_into(reply, error.message);
    if (kind == kReplyError) encode_into(reply, std::int32_t{error.error_number});
}

// The type of the exception being handled, for one that is not a std::exception.
std::string current_exception_type_name() {
    const std::type_info* type = abi::__cxa_current_exception_type();
    return type != nullptr ? demangled_name(*type) : std::string("unknown exception");
}

}  // namespace

WireError wire_error_of(const std::exception& e) {
    if (const auto* remote = dynamic_cast<const RemoteError*>(&e)) return {true, {remote->type_name(), remote->message()}};
    if (const auto* os = dynamic_cast<const OSError*>(&e)) return {false, {"OSError", e.what(), os->code().value()}};
    std::string kind = mproc_kind_of(e);
    if (kind.empty()) return {true, {demangled_name(typeid(e)), e.what()}};
    return {false, {std::move(kind), e.what()}};
}

namespace {

ListenerOptions listener_options(const std::optional<Address>& address, const AuthKey& key) {
    ListenerOptions options;
    options.address = address;
    options.authkey = key;
    // Python 3.13's backlog; a burst of children connecting at once is not refused.
    options.backlog = 128;
    return options;
}

}  // namespace

void remove_socket(const Address& address) {
    const auto* unix_address = std::get_if<UnixAddress>(&address);
    if (unix_address == nullptr || unix_address->path.empty() || unix_address->path[0] == '\0') return;
    ::unlink(unix_address->path.c_str());
    // The private directory the path was made in, if it is empty now.
    const auto slash = unix_address->path.rfind('/');
    if (slash != std::string::npos && slash > 0) ::rmdir(unix_address->path.substr(0, slash).c_str());
}

void clear_stale_socket(const Address& address) {
    const auto* unix_address = std::get_if<UnixAddress>(&address);
    if (unix_address == nullptr || unix_address->path.empty() || unix_address->path[0] == '\0') return;
    struct stat info {};
    if (::lstat(unix_address->path.c_str(), &info) != 0 || !S_ISSOCK(info.st_mode)) return;
    sockaddr_un peer{};
    if (unix_address->path.size() >= sizeof peer.sun_path) return;
    peer.sun_family = AF_UNIX;
    std::memcpy(peer.sun_path, unix_address->path.c_str(), unix_address->path.size() + 1);
    const UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return;
    // Nobody listening: the socket file of a server that was killed.
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&peer), sizeof peer) != 0 && errno == ECONNREFUSED) {
        get_logger().debug("manager: removing the stale socket {}", unix_address->path);
        ::unlink(unix_address->path.c_str());
    }
}

namespace {
Listener open_listener(const std::optional<Address>& where, const AuthKey& key) {
    if (where) clear_stale_socket(*where);
    return Listener(listener_options(where, key));
}
}  // namespace

ServerState::ServerState(std::optional<Address> where, AuthKey key, std::map<std::string, RegisteredType> registered)
    : listener(open_listener(where, key)),
      address(listener.address()),
      authkey(std::move(key)),
      types(std::move(registered)),
      instance(draw_instance_number()) {}

ServerState::~ServerState() {
    std::unordered_map<std::uint64_t, Entry> doomed;
    {
        std::lock_guard lock(mutex);
        doomed.swap(objects);
    }
}

void ServerState::start_accepting(const std::shared_ptr<ServerState>& self) {
    std::thread([self] {
        for (;;) {
            try {
                // Wakes up now and then to see whether the server was asked to stop: the
                // listener is closed by this thread, the only one that uses it.
                std::optional<Connection> accepted = self->listener.accept(std::chrono::milliseconds(200));
                std::uint64_t id;
                {
                    std::lock_guard lock(self->mutex);
                    if (self->stopping) {
                        self->listener.close();
                        return;
                    }
                    id = self->next_connection++;
                }
                if (!accepted) continue;
                Connection connection = std::move(*accepted);
                std::thread([self, id, c = std::move(connection)]() mutable { self->serve_client(std::move(c), id); })
                    .detach();
            } catch (const AuthenticationError& e) {
                get_logger().warning("manager: refused a client: {}", e.what());
            } catch (const std::exception& e) {
                if (self->listener.closed()) return;
                get_logger().warning("manager: accept failed: {}", e.what());
                // Out of descriptors or memory: give the other threads a moment to free some.
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        }
    }).detach();
}

void ServerState::wait_for_shutdown() {
    std::unique_lock lock(mutex);
    stopped.wait(lock, [this] { return stopping; });
}

void ServerState::serve_client(Connection connection, std::uint64_t connection_id) {
    const Caller caller{connection_id, this};
    const int fd = connection.fileno();
    FrameReader reader;
    std::vector<std::byte> reply;
    std::string method;
    Blobs args;
    for (;;) {
        std::uint64_t id = 0;
        try {
            Decoder in(reader.next(fd, kDefaultMaxMessageSize));
            id = in.read<std::uint64_t>();
            in.read_into(method);
            in.read_into(args);
            in.expect_end();
        } catch (const EOFError&) {
            return;  // the client closed its connection: it is done
        } catch (const std::exception& e) {
            get_logger().warning("manager: dropped a client that sent a malformed request: {}", e.what());
            return;
        }
        reply.assign(kFrameHeader, std::byte{0});
        // Whatever a method throws becomes the reply: the server never ends for it.
        try {
            Blob result = dispatch(id, method, args, caller);
            reply.push_back(std::byte{kReplyOk});
            reply.insert(reply.end(), result.begin(), result.end());
        } catch (const ServerError& e) {
            error_reply(reply, kReplyError, e);
        } catch (const std::exception& e) {
            const WireError wire = wire_error_of(e);
            error_reply(reply, wire.foreign ? kReplyForeign : kReplyError, wire.error);
        } catch (...) {
            error_reply(reply, kReplyForeign, {current_exception_type_name(), "(not a std::exception)"});
        }
        try {
            send_frame(fd, reply);
        } catch (const std::exception&) {
            return;  // the client is gone
        }
        if (id == kServerObject && method == "shutdown") {
            std::lock_guard lock(mutex);
            stopping = true;
            stopped.notify_all();
        }
    }
}

Blob ServerState::dispatch(std::uint64_t id, std::string_view method, const Blobs& args, const Caller& caller) {
    if (id == kServerObject) return call_server(method, args);
    std::shared_ptr<Referent> referent;
    {
        std::lock_guard lock(mutex);
        auto it = objects.find(id);
        if (it == objects.end())
            throw ServerError{"ReferenceError", fmt::format("no object with id {} in the manager (already released?)", id)};
        referent = it->second.referent;
    }
    return referent->call(method, args, caller);
}

Blob ServerState::call_server(std::string_view method, const Blobs& args) {
    if (method == "ping") return dumps(instance);
    if (method == "number_of_objects") {
        std::lock_guard lock(mutex);
        return dumps(static_cast<std::uint64_t>(objects.size()));
    }
    if (method == "shutdown") {
        get_logger().info("manager received shutdown message");
        return {};
    }
    if (method == "create") {
        check_argument_count("create", 2, args.size());
        const auto type_id = loads<std::string>(args[0]);
        const auto ctor_args = loads<Blobs>(args[1]);
        std::shared_ptr<Referent> referent;
        auto registered = types.find(type_id);
        // Clients that create a shared type at the same time wait for the first one's object.
        std::unique_lock<std::mutex> creating;
        if (registered != types.end()) {
            if (registered->second.shared) {
                creating = std::unique_lock(creating_shared);
                std::lock_guard lock(mutex);
                auto existing = shared_objects.find(type_id);
                if (existing != shared_objects.end()) {
                    ++objects.at(existing->second).refcount;
                    return dumps(existing->second);
                }
            }
            referent = make_registered(registered->second, ctor_args);
        } else {
            referent = make_builtin(*this, type_id, ctor_args);
        }
        if (!referent) throw ServerError{"UsageError", fmt::format("unknown type id '{}'", type_id)};
        std::lock_guard lock(mutex);
        const std::uint64_t id = next_id++;
        // A shared object keeps one reference of the server's own, so that it lives as long as
        // the server, as the object a Python registered callable returns does.
        const bool shared = registered != types.end() && registered->second.shared;
        objects.emplace(id, Entry{std::move(referent), shared ? 2u : 1u, type_id});
        if (shared) shared_objects.emplace(type_id, id);
        get_logger().debug("manager: created a {} object, id {}", type_id, id);
        return dumps(id);
    }
    if (method == "incref" || method == "decref") {
        check_argument_count(method, 1, args.size());
        const auto id = loads<std::uint64_t>(args[0]);
        std::shared_ptr<Referent> dying;  // destroyed after the lock is released
        std::lock_guard lock(mutex);
        auto it = objects.find(id);
        if (it == objects.end())
            throw ServerError{"ReferenceError", fmt::format("no object with id {} in the manager (already released?)", id)};
        if (method == "incref") {
            ++it->second.refcount;
        } else if (--it->second.refcount == 0) {
            get_logger().debug("manager: disposing of the {} object, id {}", it->second.type_id, id);
            dying = std::move(it->second.referent);
            objects.erase(it);
        }
        return {};
    }
    throw ServerError{"AttributeError", fmt::format("the manager has no method '{}'", method)};
}

void manager_server_main(const ServerSettings& settings, const ServerChannel& channel) {
    Connection reply = Connection::from_fd(channel.fd);
    std::map<std::string, RegisteredType> types;
    for (const auto& wire : settings.types) types.emplace(wire.type_id, from_wire(wire));
    std::optional<Address> where;
    if (settings.has_address) where = address_of(settings.where);
    std::shared_ptr<ServerState> state;
    try {
        state = std::make_shared<ServerState>(where, AuthKey(std::span<const std::byte>(settings.authkey)),
                                              std::move(types));
    } catch (const std::exception& e) {
        reply.send(std::string(e.what()));
        return;
    }
    ProxyToken listening;
    set_address(listening, state->address);
    listening.server = state->instance;
    reply.send(std::string());
    reply.send(listening);
    // The channel the server was started with stays open as its owner's control connection: it
    // needs no handshake (only the owner has the other end), so shutting down costs no crypto.
    std::uint64_t control_id;
    {
        std::lock_guard lock(state->mutex);
        control_id = state->next_connection++;
    }
    std::thread([state, control_id, c = std::move(reply)]() mutable { state->serve_client(std::move(c), control_id); })
        .detach();
    state->start_accepting(state);
    get_logger().info("manager serving at {}", connection::to_string(state->address));
    state->wait_for_shutdown();
    if (!settings.has_address) remove_socket(state->address);
    // Clients' threads may still be inside a call; the process ends under them (as Python's
    // server does with sys.exit), so the state is never destroyed.
    new std::shared_ptr<ServerState>(std::move(state));
}

}  // namespace mproc::detail
