// The client side of managers: proxies' connections and reference counts, and BaseManager's
// life cycle (start, connect, serve, shut down).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "managers/protocol.hpp"
#include "managers/server_state.hpp"
#include "managers/wire.hpp"
#include "mproc/logging.hpp"
#include "mproc/managers.hpp"
#include "base/fork_aware_mutex.hpp"
#include "process/portable_call.hpp"
#include "process/process_access.hpp"
#include "process/runtime.hpp"

namespace mproc {
namespace detail {

// One proxied object, shared by the copies of a proxy in one process. The process in `holder`
// holds one reference to the object in the server; a forked child that inherited the state takes
// its own reference on first use, as Python's proxies do after fork.
struct ProxyState {
    ProxyToken token;
    std::string server_key;  // which connection of the thread's cache serves it
    std::atomic<int> holder{0};

    ~ProxyState();
};

namespace {

std::string server_key_of(const ProxyToken& token) {
    return fmt::format("{}|{}|{}", token.family, token.location, token.port);
}

// The connections of one thread, one per server address (Python: one per thread), each with the
// instance number of the server it reaches: a connection to a server that is gone is never used
// for another server started on the same address. After fork the child's copies are dropped, not
// used: the parent's thread owns the other end of those conversations.
struct ServerConnection {
    Connection connection;
    FrameReader reader;
    std::uint64_t server = 0;
};
struct ThreadConnections {
    int pid = 0;
    std::unordered_map<std::string, ServerConnection> by_server;
    std::vector<std::byte> request;
};
// Proxies destroyed late (static ones, after the thread's thread_local objects are gone) still
// reach their server, on a connection of their own: the cache is a plain pointer that stays
// readable after its owner's destructor ran.
thread_local ThreadConnections* cached_connections = nullptr;
thread_local bool connections_gone = false;
struct ConnectionsOwner {
    ~ConnectionsOwner() {
        delete cached_connections;
        cached_connections = nullptr;
        connections_gone = true;
    }
};
thread_local ConnectionsOwner connections_owner;

ThreadConnections* thread_connections() {
    if (connections_gone) return nullptr;
    if (cached_connections == nullptr) {
        static_cast<void>(&connections_owner);  // constructs it, so that it runs at thread exit
        cached_connections = new ThreadConnections;
    }
    return cached_connections;
}

// getpid(2) is a system call (glibc stopped caching it); every proxy call asks which process it
// is in, so the answer is cached and renewed in a forked child by an atfork handler.
std::atomic<int> cached_pid{0};

int current_pid() noexcept {
    int pid = cached_pid.load(std::memory_order_relaxed);
    if (pid != 0) return pid;
    static const bool registered = [] {
        register_fork_hooks(Floor::managers, {.child = [] { cached_pid.store(0, std::memory_order_relaxed); }});
        return true;
    }();
    static_cast<void>(registered);
    pid = static_cast<int>(::getpid());
    cached_pid.store(pid, std::memory_order_relaxed);
    return pid;
}

[[noreturn]] void server_gone(const ProxyToken& token, const std::exception& cause) {
    throw ManagerDiedError(fmt::format("the manager at {} is gone: {}", connection::to_string(address_of(token)),
                                       cause.what()));
}

// Runs `exchange`; a failure of the transport (refused, reset, closed, cut short) means the server
// is gone: `drop()` forgets the connection and ManagerDiedError says so. Remote errors and
// AuthenticationError pass through.
template <class Exchange, class Drop>
auto or_server_gone(const ProxyToken& token, Exchange&& exchange, Drop&& drop) {
    try {
        return exchange();
    } catch (const OSError& e) {
        drop();
        server_gone(token, e);
    } catch (const EOFError& e) {
        drop();
        server_gone(token, e);
    } catch (const ProtocolError& e) {
        drop();
        server_gone(token, e);
    }
}

void keep() {}

Connection connect_to(const ProxyToken& token) {
    ClientOptions options;
    options.authkey = AuthKey(std::span<const std::byte>(token.authkey));
    return or_server_gone(token, [&] { return Client(address_of(token), options); }, keep);
}

Blob decode_reply(std::span<const std::byte> reply) {
    if (reply.empty()) throw ProtocolError("manager: empty reply");
    if (reply[0] == std::byte{kReplyOk}) return Blob(reply.begin() + 1, reply.end());
    Decoder in(reply.subspan(1));
    auto kind = in.read<std::string>();
    auto message = in.read<std::string>();
    if (reply[0] == std::byte{kReplyForeign}) throw RemoteError(std::move(kind), std::move(message));
    if (reply[0] != std::byte{kReplyError}) throw ProtocolError("manager: a reply of an unknown kind");
    raise_remote(kind, message, in.read<std::int32_t>());
}

// A request to the server itself, without arguments: a Connection message, or, with `room` for
// the length at the front (kFrameHeader), a frame for send_frame.
std::vector<std::byte> server_request(std::string_view method, std::size_t room = 0) {
    std::vector<std::byte> message(room, std::byte{0});
    Encoder out(message);
    out.write(kServerObject);
    out.write(std::string(method));
    out.write(Blobs{});
    return message;
}

[[noreturn]] void another_server(const ProxyToken& token) {
    throw ManagerDiedError(fmt::format("the manager at {} is gone: another server listens there now",
                                       connection::to_string(address_of(token))));
}

// Checks that a new connection reaches the token's server, not one started later on its address
// (one round trip, once per connection): `ping()` sends the server a ping and returns its reply,
// the server's instance number. ManagerDiedError if it is another server.
template <class Ping>
void check_server(const ProxyToken& token, Ping&& ping) {
    if (token.server == 0) return;  // not known: whoever listens there
    if (loads<std::uint64_t>(decode_reply(or_server_gone(token, ping, keep))) != token.server) another_server(token);
}

// A connection of this thread to the token's server.
ServerConnection open_connection(const ProxyToken& token) {
    ServerConnection opened{connect_to(token), {}, token.server};
    check_server(token, [&] {
        std::vector<std::byte> frame = server_request("ping", kFrameHeader);
        const int fd = opened.connection.fileno();
        send_frame(fd, frame);
        const std::span<const std::byte> reply = opened.reader.next(fd, kDefaultMaxMessageSize);
        return Blob(reply.begin(), reply.end());
    });
    return opened;
}

// Sends one request on the calling thread's connection to the token's server and returns the
// result. The connection is dropped when the exchange fails, so the next call connects anew.
Blob request(const ProxyToken& token, const std::string& key, std::uint64_t id, std::string_view method,
             const Blobs& args) {
    ThreadConnections* cached = thread_connections();
    ThreadConnections one_off;
    ThreadConnections& mine = cached != nullptr ? *cached : one_off;
    const int pid = current_pid();
    if (mine.pid != pid) {
        mine.by_server.clear();  // closes this process's copies only
        mine.pid = pid;
    }
    auto it = mine.by_server.find(key);
    if (it != mine.by_server.end() && token.server != 0 && it->second.server != token.server) {
        // One server's connection, another's token: the older of the two is gone.
        mine.by_server.erase(it);
        it = mine.by_server.end();
    }
    if (it == mine.by_server.end()) it = mine.by_server.emplace(key, open_connection(token)).first;
    mine.request.assign(kFrameHeader, std::byte{0});
    Encoder out(mine.request);
    out.write(id);
    out.write_varint(method.size());
    out.write_bytes(std::as_bytes(std::span(method.data(), method.size())));
    out.write(args);
    const std::span<const std::byte> reply = or_server_gone(
        token,
        [&] {
            const int fd = it->second.connection.fileno();
            send_frame(fd, mine.request);
            return it->second.reader.next(fd, kDefaultMaxMessageSize);
        },
        [&] { mine.by_server.erase(it); });
    return decode_reply(reply);
}

// The states whose references this process holds, released by the exit sequence: a child's
// proxies usually live until _exit and would otherwise keep their objects alive.
struct HeldReferences {
    ForkAwareMutex mutex;
    std::unordered_set<ProxyState*> states;
    int registered_pid = 0;
};
HeldReferences& held_references() {
    static auto* held = new HeldReferences;  // never destroyed: the exit sequence uses it
    return *held;
}

void release(ProxyState& state) noexcept {
    // Late in the process's exit (static proxies), when connecting anew may touch libraries
    // already torn down: the reference is left to the server's end.
    if (connections_gone) return;
    try {
        request(state.token, state.server_key, kServerObject, "decref", {dumps(state.token.id)});
    } catch (const std::exception& e) {
        get_logger().debug("manager: could not release object {}: {}", state.token.id, e.what());
    }
}

void release_all_at_exit() {
    std::vector<ProxyState*> mine;
    {
        HeldReferences& held = held_references();
        std::lock_guard lock(held.mutex);
        const int pid = current_pid();
        for (ProxyState* state : held.states)
            if (state->holder.load() == pid) mine.push_back(state);
    }
    for (ProxyState* state : mine) {
        int expected = current_pid();
        if (state->holder.compare_exchange_strong(expected, 0)) release(*state);
    }
}

// Records that this process holds a reference through `state`.
void hold(ProxyState& state) {
    const int pid = current_pid();
    state.holder.store(pid);
    HeldReferences& held = held_references();
    bool first_in_this_process = false;
    {
        std::lock_guard lock(held.mutex);
        held.states.insert(&state);
        first_in_this_process = held.registered_pid != pid;
        held.registered_pid = pid;
    }
    // Outside the lock: the runtime's mutex is older, and fork takes them in creation order.
    if (first_in_this_process) at_exit(ExitPhase::before_children, release_all_at_exit);
}

// Takes this process's own reference to an inherited state, once.
void acquire_inherited(ProxyState& state) {
    const int pid = current_pid();
    int current = state.holder.load();
    if (current == pid) return;
    if (!state.holder.compare_exchange_strong(current, pid)) return;
    try {
        request(state.token, state.server_key, kServerObject, "incref", {dumps(state.token.id)});
    } catch (...) {
        state.holder.store(0);
        throw;
    }
    hold(state);
}

std::shared_ptr<ProxyState> new_state(const ProxyToken& token) {
    auto state = std::make_shared<ProxyState>();
    state->token = token;
    state->server_key = server_key_of(token);
    return state;
}

}  // namespace

ProxyState::~ProxyState() {
    {
        HeldReferences& held = held_references();
        std::lock_guard lock(held.mutex);
        held.states.erase(this);
    }
    int expected = current_pid();
    if (holder.compare_exchange_strong(expected, 0)) release(*this);
}

[[noreturn]] void raise_remote(const std::string& kind, const std::string& message, int error_number) {
    if (kind == "KeyError") throw KeyError(message);
    if (kind == "IndexError") throw IndexError(message);
    if (kind == "ValueError") throw ValueError(message);
    if (kind == "AttributeError") throw AttributeError(message);
    if (kind == "Empty") throw Empty(message);
    if (kind == "Full") throw Full(message);
    if (kind == "BrokenBarrierError") throw BrokenBarrierError(message);
    if (kind == "DecodeError") throw DecodeError(message);
    if (kind == "UsageError") throw UsageError(message);
    if (kind == "TimeoutError") throw TimeoutError(message);
    if (kind == "ProtocolError") throw ProtocolError(message);
    if (kind == "AuthenticationError") throw AuthenticationError(message);
    if (kind == "ManagerDiedError") throw ManagerDiedError(message);
    if (kind == "EOFError") throw EOFError(message);
    if (kind == "ProcessError") throw ProcessError(message);
    if (kind == "OSError") {
        // OSError(what, errno)'s message is "<what>: <strerror(errno)>": made again from <what>,
        // it has the same message and the errno.
        const std::string suffix = std::string(": ") + std::strerror(error_number);
        if (error_number != 0 && message.ends_with(suffix))
            throw OSError(message.substr(0, message.size() - suffix.size()), error_number);
        throw OSError(message);
    }
    throw RemoteError(kind, message);
}

namespace {
// The grants alive on this thread, innermost first.
thread_local ReferenceGrant* current_grant = nullptr;
}  // namespace

ReferenceGrant::ReferenceGrant(ProxyToken server, std::vector<std::uint64_t> ids)
    : server_(std::move(server)), ids_(std::move(ids)), outer_(current_grant) {
    current_grant = this;
}

ReferenceGrant::~ReferenceGrant() {
    current_grant = outer_;
    const std::string key = server_key_of(server_);
    for (const std::uint64_t id : ids_) {
        try {
            request(server_, key, kServerObject, "decref", {dumps(id)});
        } catch (const std::exception& e) {
            get_logger().debug("manager: could not release object {}: {}", id, e.what());
        }
    }
}

bool ReferenceGrant::take(const ProxyToken& token) {
    for (ReferenceGrant* grant = current_grant; grant != nullptr; grant = grant->outer_) {
        if (server_key_of(grant->server_) != server_key_of(token)) continue;
        auto it = std::find(grant->ids_.begin(), grant->ids_.end(), token.id);
        if (it == grant->ids_.end()) continue;
        grant->ids_.erase(it);
        return true;
    }
    return false;
}

}  // namespace detail

// ---- BaseProxy ----

namespace {
[[noreturn]] void empty_proxy() { throw UsageError("the proxy refers to no object"); }
}  // namespace

const std::string& BaseProxy::type_id() const {
    if (!state_) empty_proxy();
    return state_->token.type_id;
}

std::uint64_t BaseProxy::object_id() const {
    if (!state_) empty_proxy();
    return state_->token.id;
}

Address BaseProxy::address() const {
    if (!state_) empty_proxy();
    return detail::address_of(state_->token);
}

detail::Blob BaseProxy::callmethod(std::string_view method, const detail::Blobs& args) const {
    if (!state_) empty_proxy();
    if (state_->holder.load(std::memory_order_relaxed) != detail::current_pid())
        detail::acquire_inherited(*state_);
    return detail::request(state_->token, state_->server_key, state_->token.id, method, args);
}

std::string BaseProxy::repr() const {
    if (!state_) return fmt::format("<{} object, no referent>", proxy_name());
    return fmt::format("<{} object, typeid '{}' at {}>", proxy_name(), state_->token.type_id,
                       static_cast<const void*>(state_.get()));
}

detail::ProxyToken BaseProxy::token() const {
    if (!state_) empty_proxy();
    return state_->token;
}

void BaseProxy::adopt(const detail::ProxyToken& token) {
    auto state = detail::new_state(token);
    if (detail::ReferenceGrant::take(token)) {
        detail::hold(*state);  // the reference the server handed over with the value
    } else {
        detail::acquire_inherited(*state);
    }
    state_ = std::move(state);
}

void BaseProxy::held_here(const std::vector<detail::ProxyToken>& tokens, std::vector<std::uint64_t>& held) const {
    if (!state_) empty_proxy();
    for (const auto& token : tokens)
        if (detail::server_key_of(token) == state_->server_key) held.push_back(token.id);
}

bool Namespace::contains(std::string_view name) const {
    if (!local_name(name)) return call_typed<bool>("__contains__", std::string(name));
    LocalAttributes& local = locals();
    std::lock_guard lock(local.mutex);
    return local.values.contains(name);
}

void Namespace::erase(std::string_view name) const {
    if (!local_name(name)) return call_typed<void>("__delattr__", std::string(name));
    LocalAttributes& local = locals();
    std::lock_guard lock(local.mutex);
    auto it = local.values.find(name);
    if (it == local.values.end()) no_local_attribute(name);
    local.values.erase(it);
}

void Namespace::set_local(std::string_view name, std::string fingerprint, std::shared_ptr<const void> value) const {
    LocalAttributes& local = locals();
    std::lock_guard lock(local.mutex);
    local.values.insert_or_assign(std::string(name), std::pair(std::move(fingerprint), std::move(value)));
}

Namespace::LocalValue Namespace::get_local(std::string_view name) const {
    LocalAttributes& local = locals();
    std::lock_guard lock(local.mutex);
    auto it = local.values.find(name);
    if (it == local.values.end()) no_local_attribute(name);
    return it->second;
}

Namespace::LocalAttributes& Namespace::locals() const {
    if (!local_) empty_proxy();  // moved from
    return *local_;
}

void Namespace::no_local_attribute(std::string_view name) {
    throw AttributeError(fmt::format("'NamespaceProxy' object has no attribute '{}'", name));
}

void Namespace::wrong_type(std::string_view name, const std::string& stored, const std::type_info& asked) {
    throw DecodeError(fmt::format("Namespace attribute '{}' was set as a different type than {} (stored: {})", name,
                                  detail::demangled_name(asked), stored));
}

// ---- BaseManager ----

namespace detail {

enum class ManagerPhase { initial, started, serving, connected, shut_down };

struct ManagerState {
    ManagerOptions options;
    std::deque<RegisteredType> registry;  // a deque: TypeRegistration keeps pointers into it
    ManagerPhase phase = ManagerPhase::initial;
    Address address;
    AuthKey authkey;
    std::optional<Process> process;
    int owner_pid = 0;
    std::shared_ptr<ServerState> server;
    // The owner's end of the channel the server was started with, kept as a connection to it:
    // no handshake, so shutdown works even from a static destructor after the crypto library was
    // torn down, and starting costs one authenticated connection (the first proxy's) only.
    mutable std::optional<Connection> control;
    mutable std::mutex control_mutex;  // one request at a time on it
    std::uint64_t instance = 0;        // the server's instance number, once known

    ProxyToken token_for(std::uint64_t id, std::string type_id) const {
        ProxyToken token;
        token.type_id = std::move(type_id);
        set_address(token, address);
        token.authkey.assign(authkey.bytes().begin(), authkey.bytes().end());
        token.id = id;
        token.server = instance;
        return token;
    }
    // A request to the server itself on a connection of its own, outside the threads' caches.
    Blob ask_server(std::string_view method) const {
        const ProxyToken token = token_for(kServerObject, "");
        if (control && owner_pid == current_pid()) {
            std::lock_guard lock(control_mutex);
            return or_server_gone(
                token,
                [&] {
                    control->send_bytes(server_request(method));
                    return decode_reply(control->recv_bytes());
                },
                keep);
        }
        Connection connection = connect_to(token);
        const auto exchange = [&](std::string_view asked) {
            connection.send_bytes(server_request(asked));
            return connection.recv_bytes();
        };
        check_server(token, [&] { return exchange("ping"); });
        return decode_reply(or_server_gone(token, [&] { return exchange(method); }, keep));
    }
    void shutdown();
};

namespace {

// The managers this process started, shut down by its exit sequence (Python's finalizer,
// exitpriority 0: before the children are joined).
struct LiveManagers {
    ForkAwareMutex mutex;
    std::vector<std::weak_ptr<ManagerState>> started;
    int registered_pid = 0;
};
LiveManagers& live_managers() {
    static auto* live = new LiveManagers;  // never destroyed: the exit sequence uses it
    return *live;
}

void shut_down_live_managers() {
    std::vector<std::shared_ptr<ManagerState>> mine;
    {
        LiveManagers& live = live_managers();
        std::lock_guard lock(live.mutex);
        for (auto& weak : live.started)
            if (auto state = weak.lock(); state && state->owner_pid == current_pid())
                mine.push_back(std::move(state));
        live.started.clear();
    }
    for (auto& state : mine) state->shutdown();
}

}  // namespace

void ManagerState::shutdown() {
    if (phase != ManagerPhase::started || owner_pid != current_pid()) return;
    phase = ManagerPhase::shut_down;
    Process& server_process = *process;
    get_logger().debug("sending shutdown message to manager");
    if (server_process.is_alive()) {
        try {
            ask_server("shutdown");
        } catch (const std::exception& e) {
            get_logger().debug("manager: shutdown request failed: {}", e.what());
        }
        server_process.join(options.shutdown_timeout);
    }
    if (server_process.is_alive()) {
        get_logger().info("manager still alive");
        get_logger().debug("trying to `terminate()` manager process");
        server_process.terminate();
        server_process.join(options.shutdown_timeout);
        if (server_process.is_alive()) {
            get_logger().info("manager still alive after terminate");
            server_process.kill();
            server_process.join();
        }
    }
    server_process.join();
    control.reset();
    // A server that did not end by itself could not remove its socket.
    if (server_process.exitcode() != 0 && !options.address) remove_socket(address);
}

}  // namespace detail

BaseManager::BaseManager(ManagerOptions options) : state_(std::make_shared<detail::ManagerState>()) {
    state_->options = std::move(options);
    state_->authkey = state_->options.authkey ? *state_->options.authkey : current_process().authkey();
    if (state_->options.address) state_->address = *state_->options.address;
}

BaseManager::BaseManager(BaseManager&&) noexcept = default;
BaseManager& BaseManager::operator=(BaseManager&& other) noexcept {
    if (this != &other) {
        if (state_) state_->shutdown();
        state_ = std::move(other.state_);
    }
    return *this;
}

BaseManager::~BaseManager() {
    if (!state_) return;
    try {
        state_->shutdown();
    } catch (const std::exception& e) {
        get_logger().warning("manager: shutdown failed: {}", e.what());
    }
}

namespace {
void require_state(const std::shared_ptr<detail::ManagerState>& state) {
    if (!state) throw UsageError("the manager was moved from");
}
}  // namespace

detail::RegisteredType* BaseManager::add_registration(detail::RegisteredType entry) {
    require_state(state_);
    if (state_->phase != detail::ManagerPhase::initial)
        throw UsageError("register types before start(), get_server() or connect()");
    for (auto& existing : state_->registry)
        if (existing.type_id == entry.type_id) {
            existing = std::move(entry);
            return &existing;
        }
    return &state_->registry.emplace_back(std::move(entry));
}

namespace detail {
namespace {

// The server process: it ignores SIGINT, as Python's server does (a Ctrl-C meant for the
// program's processes leaves its manager serving them until they shut it down); then the
// initializer (Python runs it before the server is made), then the server. An initializer that
// throws is reported on the channel as a server that could not start.
void manager_server_start(const ServerSettings& settings, const ServerChannel& channel,
                          const PortableCall& initializer) {
    ::signal(SIGINT, SIG_IGN);
    try {
        initializer();
    } catch (const std::exception& e) {
        Connection reply = Connection::from_fd(channel.fd);
        reply.send(fmt::format("the initializer threw {}: {}", demangled_name(typeid(e)), e.what()));
        return;
    }
    manager_server_main(settings, channel);
}

}  // namespace
}  // namespace detail

void BaseManager::start() { start_server(nullptr); }

void BaseManager::start_server(std::shared_ptr<detail::Target> initializer) {
    require_state(state_);
    detail::ManagerState& s = *state_;
    if (s.phase == detail::ManagerPhase::started) throw UsageError("Already started server");
    if (s.phase == detail::ManagerPhase::shut_down) throw UsageError("Manager has shut down");
    if (s.phase != detail::ManagerPhase::initial) throw UsageError("the manager is already serving or connected");
    detail::ServerSettings settings;
    settings.has_address = s.options.address.has_value();
    if (settings.has_address) detail::set_address(settings.where, *s.options.address);
    settings.authkey.assign(s.authkey.bytes().begin(), s.authkey.bytes().end());
    for (const auto& type : s.registry) settings.types.push_back(detail::to_wire(type));

    auto [from_server, to_parent] = Pipe();
    const detail::ServerChannel channel{to_parent.fileno()};
    Process server(ProcessOptions{.start_method = s.options.context, .die_with_parent = true},
                   &detail::manager_server_start, std::move(settings), channel,
                   detail::PortableCall{std::move(initializer), {}});
    const std::string default_name = server.name();
    server.set_name(type_name() + default_name.substr(default_name.find('-')));
    server.start();
    to_parent.close();  // the server has its own copy now
    std::string failure = "Unable to start server";
    try {
        // The server reports its address once it listens, or why it could not.
        while (!from_server.poll(std::chrono::milliseconds(50)))
            if (!server.is_alive()) throw ProcessError("the server process ended");
        auto error = from_server.recv<std::string>();
        if (!error.empty()) throw ProcessError(error);
        const auto listening = from_server.recv<detail::ProxyToken>();
        s.address = detail::address_of(listening);
        s.instance = listening.server;
    } catch (const std::exception& e) {
        if (server.is_alive()) server.kill();
        server.join();
        throw ProcessError(failure + ": " + e.what());
    }
    s.process = server;
    s.owner_pid = detail::current_pid();
    s.control = std::move(from_server);
    s.phase = detail::ManagerPhase::started;
    detail::LiveManagers& live = detail::live_managers();
    bool first_in_this_process = false;
    {
        std::lock_guard lock(live.mutex);
        live.started.push_back(state_);
        first_in_this_process = live.registered_pid != s.owner_pid;
        live.registered_pid = s.owner_pid;
    }
    if (first_in_this_process)
        detail::at_exit(detail::ExitPhase::before_children, detail::shut_down_live_managers);
}

Server BaseManager::get_server() {
    require_state(state_);
    detail::ManagerState& s = *state_;
    if (s.phase != detail::ManagerPhase::initial) throw UsageError("the manager is already started, serving or connected");
    std::map<std::string, detail::RegisteredType> types;
    for (const auto& type : s.registry) types.emplace(type.type_id, type);
    s.server = std::make_shared<detail::ServerState>(s.options.address, s.authkey, std::move(types));
    s.address = s.server->address;
    s.instance = s.server->instance;
    s.phase = detail::ManagerPhase::serving;
    return Server(s.server);
}

void Server::serve_forever() {
    state_->start_accepting(state_);
    state_->wait_for_shutdown();
}

const Address& Server::address() const { return state_->address; }

void BaseManager::connect() {
    require_state(state_);
    detail::ManagerState& s = *state_;
    if (s.phase != detail::ManagerPhase::initial) throw UsageError("the manager is already started, serving or connected");
    if (!s.options.address) throw UsageError("connect() needs the server's address in the options");
    s.instance = loads<std::uint64_t>(s.ask_server("ping"));
    s.phase = detail::ManagerPhase::connected;
}

void BaseManager::shutdown() {
    require_state(state_);
    if (state_->phase == detail::ManagerPhase::connected) {
        state_->ask_server("shutdown");
        state_->phase = detail::ManagerPhase::shut_down;
        return;
    }
    state_->shutdown();
}

void BaseManager::join() {
    require_state(state_);
    if (state_->process) state_->process->join();
}

Address BaseManager::address() const {
    require_state(state_);
    return state_->address;
}

const AuthKey& BaseManager::authkey() const {
    require_state(state_);
    return state_->authkey;
}

std::optional<Process> BaseManager::process() const {
    require_state(state_);
    return state_->process;
}

std::size_t BaseManager::number_of_objects() const {
    require_state(state_);
    if (state_->phase == detail::ManagerPhase::initial || state_->phase == detail::ManagerPhase::shut_down)
        throw UsageError("the manager is not running");
    return loads<std::uint64_t>(state_->ask_server("number_of_objects"));
}

BaseProxy BaseManager::create_raw(std::string_view type_id, const detail::Blobs& args) {
    require_state(state_);
    detail::ManagerState& s = *state_;
    if (s.phase == detail::ManagerPhase::initial) throw UsageError("the manager is not started or connected");
    if (s.phase == detail::ManagerPhase::shut_down) throw UsageError("Manager has shut down");
    detail::ProxyToken token = s.token_for(detail::kServerObject, std::string(type_id));
    const std::string key = detail::server_key_of(token);
    token.id = loads<std::uint64_t>(
        detail::request(token, key, detail::kServerObject, "create", {dumps(std::string(type_id)), dumps(args)}));
    auto state = detail::new_state(token);
    detail::hold(*state);
    return BaseProxy(std::move(state));
}

detail::Blobs BaseManager::server_call_arguments(const ServerCall& call) const {
    if (!call) return {dumps(std::vector<std::byte>{}), dumps(std::string()), dumps(std::vector<std::uint64_t>{})};
    require_state(state_);
    std::vector<std::byte> encoded;
    std::vector<std::uint64_t> held;
    {
        const detail::NestedProxies scope;
        Encoder out(encoded);
        call.target()->encode_portable(out);
        const std::string here = detail::server_key_of(state_->token_for(detail::kServerObject, ""));
        for (const auto& token : scope.tokens())
            if (detail::server_key_of(token) == here) held.push_back(token.id);
    }
    return {dumps(encoded), dumps(detail::executable_identity()), dumps(held)};
}

SyncManager Manager(ManagerOptions options) {
    SyncManager manager(std::move(options));
    manager.start();
    return manager;
}

}  // namespace mproc
