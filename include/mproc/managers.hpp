#pragma once
// Managers: objects that live in a server process and are used from any process through proxies
// (Python's multiprocessing.managers: Manager(), SyncManager, BaseManager, the proxies).
//
//   mproc::SyncManager manager = mproc::Manager();          // starts SyncManager-1
//   mproc::DictProxy<int, int> d = manager.dict<int, int>();
//   mproc::Process p([](mproc::DictProxy<int, int> d) { d[1] = 2; }, d);
//   p.start(); p.join();
//   std::cout << d << '\n';                                  // {1: 2}
//
// The server process (named SyncManager-N, or BaseManager-N, drawing a number like any process)
// listens on a private Unix socket with a random authkey; every process that holds a proxy
// connects to it, one connection per thread, and calls the object's methods by name. A proxy is
// a handle: copies refer to the same remote object, and it can be handed to children under every
// start method, to Pool workers, or through a Queue or a Connection (its address, authkey and
// object id travel; the receiver connects anew).
//
// Lifetime: the server belongs to the process that started it. It stops when the manager object
// is destroyed there, when shutdown() is called, or when that process exits (the exit sequence
// shuts it down before joining children, as Python's finalizer does); it is killed if its owner
// dies (SIGKILL included). It ignores SIGINT, as Python's does, so that a Ctrl-C meant for the
// program leaves it serving until its owner shuts it down. Shutting down escalates as Python's does: a shutdown request, then
// join(shutdown_timeout), then SIGTERM, then SIGKILL. Objects are reference counted: each process
// holding proxies of an object holds a reference, released when its last proxy goes or the
// process exits, and the object is deleted when no reference is left. A proxy stored in a managed
// dict, list or Namespace of the same manager is a reference too, for as long as it is stored.
//
// How it differs from Python, by design:
//  - Typed. A managed value is stored in the server as its encoding (codec.hpp) and the proxy
//    names the type: DictProxy<K, V>, ListProxy<T>, ValueProxy<T>, QueueProxy<T>. Keys compare by
//    their encoding. A Namespace attribute is read with get<T>(name); reading it as another type
//    than it was set with is a DecodeError naming both types.
//  - Python's gotcha is kept: a value read from a proxy is a copy. Changing a list read from a
//    Namespace changes the copy only; set it again to share the change.
//  - User types are registered with the methods they expose, by member pointer:
//      manager.register_type<Counter>("Counter").method<&Counter::increment>("increment");
//    The member pointer is a template argument so that the method's entry point is a plain
//    function, which reaches a server started by spawn or forkserver as a code reference.
//    Calling a method that was not exposed is an AttributeError with Python's message. Each
//    client is served by a thread of its own; calls on one object of a user type run one at a
//    time unless the type is registered with .concurrent() (then a method that blocks holds up
//    no other client). The built-in objects are always safe to use concurrently, and their
//    blocking calls (a queue's get, a lock's acquire, a condition's wait) hold up nobody else.
//  - Errors are typed: KeyError, IndexError, ValueError, AttributeError (errors.hpp) with
//    Python's messages. An mproc exception thrown by a user type's method in the server arrives
//    as the same type with the same what() (an OSError with its errno); any other exception
//    (a std::runtime_error, a type of the user's) is a RemoteError carrying its type name and
//    message, and the server goes on. A server that is gone (killed, shut down) is a
//    ManagerDiedError on the next call, or on the call in flight, without waiting; a proxy of it
//    never reaches another server started later on the same address.
//  - The server drops a client that sends garbage or fails the authkey challenge, logging why,
//    and goes on serving the others; a client that connects and says nothing is disconnected
//    when its handshake deadline passes and never holds up anyone else.
//  - Proxies carry the authkey when they are encoded, also into a Queue or a Connection (Python
//    only while spawning): treat an encoded proxy as a secret.
//
// This file: the managers (BaseManager, SyncManager, Manager()), then the proxies. What their
// templates need inline lies in detail/manager_types.hpp (argument encoding, registered types, the
// token a proxy travels as), detail/manager_references.hpp (the references stored proxies hold)
// and detail/manager_access.hpp (element references, iterators over remote sequences); the
// managed Pool's proxies in managed_pool.hpp.

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mproc/authkey.hpp"
#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/detail/manager_access.hpp"
#include "mproc/detail/manager_references.hpp"
#include "mproc/detail/manager_types.hpp"
#include "mproc/detail/py_repr.hpp"
#include "mproc/detail/target.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"

namespace mproc {

namespace detail {
struct ProxyState;
struct ManagerState;
struct ServerState;
}  // namespace detail

// The proxies a manager makes, below the managers.
class BaseProxy;
class Proxy;
template <class K, class V>
class DictProxy;
template <class T>
class ListProxy;
class Namespace;
template <class T>
class ValueProxy;
template <class T>
class ArrayProxy;
template <class T>
class QueueProxy;
template <class T>
class JoinableQueueProxy;
class AcquirerProxy;
class ConditionProxy;
class EventProxy;
class BarrierProxy;
class PoolProxy;                 // managed_pool.hpp
struct ManagedPoolOptions;       // managed_pool.hpp
template <class T>
class TypeRegistration;
class Server;
class ServerCall;

// ---- Managers ----

struct ManagerOptions {
    // Where the server listens. Unset: a new private Unix socket path (removed at shutdown).
    // A TcpAddress needs an authkey (the process's own key is used when none is given).
    std::optional<Address> address{};
    // Unset: the authkey of the current process (Python: current_process().authkey).
    std::optional<AuthKey> authkey{};
    // The start method of the server process. Unset: the default (context.hpp).
    std::optional<StartMethod> context{};
    // How long shutdown() waits for the server to end before terminating it (Python 3.11's
    // shutdown_timeout), and then again before killing it.
    std::chrono::milliseconds shutdown_timeout{1000};
};

struct TypeOptions {
    // Every create() of the type returns the same object, created on the first (Python: register
    // with a callable that returns one shared object, the remote-manager idiom).
    bool shared = false;
};

// Python's BaseManager: register types, then start() a server process, serve in this process
// (get_server().serve_forever()), or connect() to a server somewhere else.
class BaseManager {
public:
    explicit BaseManager(ManagerOptions options = {});
    BaseManager(BaseManager&&) noexcept;
    BaseManager& operator=(BaseManager&&) noexcept;
    BaseManager(const BaseManager&) = delete;
    BaseManager& operator=(const BaseManager&) = delete;
    // Shuts the server down if this process started it.
    virtual ~BaseManager();

    // Registers a user type: a proxy of it is made by create(type_id, constructor arguments).
    // Register before start() or get_server(); a connecting client registers nothing.
    template <class T, class... CtorArgs>
    TypeRegistration<T> register_type(std::string type_id, TypeOptions options = {}) {
        detail::RegisteredType entry;
        entry.type_id = std::move(type_id);
        entry.class_name = detail::type_name_of(typeid(T));
        entry.create = &detail::make_object<T, CtorArgs...>;
        entry.destroy = &detail::delete_object<T>;
        entry.shared = options.shared;
        return TypeRegistration<T>(add_registration(std::move(entry)));
    }

    // Starts the server process. ProcessError("Unable to start server") when it fails to come up;
    // UsageError when already started or connected.
    void start();
    // Starts the server process, which runs initializer(args...) before it serves (Python's
    // start(initializer, initargs)). Under spawn and forkserver the initializer travels as a
    // Process target does: a function or a lambda without captures, with Encodable arguments
    // (UsageError otherwise); under fork any callable. When it throws, the server does not serve
    // and start() throws ProcessError("Unable to start server: the initializer threw <type>: <what>").
    template <class F, class... A>
        requires std::invocable<std::decay_t<F>&, std::decay_t<A>&...>
    void start(F&& initializer, A&&... args) {
        start_server(detail::make_target(std::forward<F>(initializer), std::forward<A>(args)...));
    }
    // A server in this process, listening on the manager's address (Python's get_server()).
    Server get_server();
    // Connects to a running server at the manager's address; AuthenticationError for a wrong key,
    // ManagerDiedError when nothing listens there.
    void connect();
    // Stops the server this process started (request, join, terminate, kill), or, on a connected
    // client, asks the remote server to stop. Idempotent.
    void shutdown();
    // Waits for the server process this process started to end.
    void join();

    // A new object of a registered type (or a built-in one: "dict", "list", ...).
    template <class... A>
    Proxy create(std::string_view type_id, const A&... args);

    // The address of the server (after start(), get_server() or, as given, for connect()).
    Address address() const;
    const AuthKey& authkey() const;
    // The server process this process started; nullopt otherwise.
    std::optional<Process> process() const;
    // How many objects the server holds (Python's _number_of_objects, for tests and debugging).
    std::size_t number_of_objects() const;

protected:
    BaseProxy create_raw(std::string_view type_id, const detail::Blobs& args);
    // `call` as constructor arguments of a built-in type: its portable encoding, the identity of
    // this program's executable (the server refuses code of another program), and the ids of the
    // objects of this server its proxies refer to (kept alive while the object holds the call).
    // Three empty arguments for no call.
    detail::Blobs server_call_arguments(const ServerCall& call) const;
    // The class name used for the server process's name (SyncManager-1).
    virtual const char* type_name() const { return "BaseManager"; }

private:
    void start_server(std::shared_ptr<detail::Target> initializer);
    detail::RegisteredType* add_registration(detail::RegisteredType entry);
    std::shared_ptr<detail::ManagerState> state_;
};

// A call that runs in the manager's server process: a managed Barrier's action (Python's
// Barrier(parties, action)). A function or a lambda without captures, with Encodable arguments
// (proxies of the manager among them: the object such a proxy refers to lives as long as the
// call is kept), as a Process target under spawn is. It reaches the server as a code reference
// whatever the start method, so it must be code of the program the server runs: a client of
// another program (a remote manager's) gets UsageError.
//   manager.Barrier(3, report);
//   manager.Barrier(3, {append_to, results, std::string("passed")});
class ServerCall {
public:
    ServerCall() = default;
    template <class F, class... Args>
        requires std::invocable<std::decay_t<F>&, std::decay_t<Args>&...>
    ServerCall(F&& function, Args&&... args)  // NOLINT: implicit, for `manager.Barrier(3, f)`
        : target_(detail::make_target(std::forward<F>(function), std::forward<Args>(args)...)) {
        using Fn = std::decay_t<F>;
        static_assert(detail::is_function_pointer<Fn> || detail::is_stateless_callable<Fn>,
                      "a call that runs in the manager's server must be a function or a lambda without captures: it "
                      "travels to the server as a code reference");
        static_assert((Encodable<std::decay_t<Args>> && ...), "the arguments of a server call must be Encodable");
    }
    explicit operator bool() const noexcept { return target_ != nullptr; }
    const std::shared_ptr<detail::Target>& target() const noexcept { return target_; }

private:
    std::shared_ptr<detail::Target> target_;
};

// Python's SyncManager: the built-in types. Manager() returns one, started.
class SyncManager : public BaseManager {
public:
    using BaseManager::BaseManager;

    // An mproc::Pool in the server process, used through a PoolProxy (managed_pool.hpp).
    PoolProxy Pool(std::optional<int> processes = std::nullopt);
    PoolProxy Pool(const ManagedPoolOptions& options);

    template <class K, class V>
    DictProxy<K, V> dict() {
        return DictProxy<K, V>(create_raw("dict", {}));
    }
    template <class K, class V, class R>
    DictProxy<K, V> dict(const R& initial) {
        DictProxy<K, V> d = dict<K, V>();
        d.update(initial);
        return d;
    }
    template <class T>
    ListProxy<T> list() {
        return ListProxy<T>(create_raw("list", {}));
    }
    template <class T, class R>
    ListProxy<T> list(const R& initial) {
        ListProxy<T> l = list<T>();
        l.extend(initial);
        return l;
    }
    mproc::Namespace Namespace();
    template <class T>
    ValueProxy<T> Value(const T& initial = T{}) {
        return ValueProxy<T>(create_raw("Value", {dumps(initial)}));
    }
    template <class T>
    ArrayProxy<T> Array(std::size_t size, const T& initial = T{}) {
        return ArrayProxy<T>(create_raw("Array", {dumps(static_cast<std::uint64_t>(size)), dumps(initial)}));
    }
    // maxsize 0: unbounded.
    template <class T>
    QueueProxy<T> Queue(std::size_t maxsize = 0) {
        return QueueProxy<T>(create_raw("Queue", {dumps(static_cast<std::uint64_t>(maxsize))}));
    }
    template <class T>
    JoinableQueueProxy<T> JoinableQueue(std::size_t maxsize = 0) {
        return JoinableQueueProxy<T>(create_raw("JoinableQueue", {dumps(static_cast<std::uint64_t>(maxsize))}));
    }
    AcquirerProxy Lock();
    AcquirerProxy RLock();
    AcquirerProxy Semaphore(int value = 1);
    AcquirerProxy BoundedSemaphore(int value = 1);
    ConditionProxy Condition();
    EventProxy Event();
    // Python's Barrier(parties, action=None, timeout=None). `action` runs once per cycle in the
    // server process, on the thread serving the last party to arrive, before any party is
    // released (threading.Barrier runs it in the last thread to arrive, which is the server's).
    // If it throws, the barrier breaks: that party's wait() throws what the action threw (an mproc
    // exception as itself, any other as RemoteError) and the other parties get BrokenBarrierError.
    // The action must not wait on the barrier itself. `timeout`: the default of wait() without
    // one; unset: wait forever. ValueError("parties must be > 0") for parties < 1.
    //   auto b = manager.Barrier(3, report, std::chrono::seconds(5));
    BarrierProxy Barrier(int parties, const ServerCall& action = {},
                         std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

protected:
    const char* type_name() const override { return "SyncManager"; }
};

// A started SyncManager (Python's multiprocessing.Manager()).
SyncManager Manager(ManagerOptions options = {});

// What register_type returns: add the methods the proxy may call, and say whether they may run
// at the same time.
template <class T>
class TypeRegistration {
public:
    // Lets the server run calls on one object of the type at the same time, each client's on the
    // thread that serves it, as Python's server does: for a type that is thread-safe itself. A
    // method that blocks (a queue's get that waits for an item) then holds up nobody else.
    // Without it the calls on one object run one at a time, in the order they come: a method that
    // blocks holds up every other client's call on that object until it returns (calls on other
    // objects go on).
    //   manager.register_type<JobQueue>("Q").concurrent().method<&JobQueue::get>("get");
    TypeRegistration& concurrent() {
        entry_->concurrent = true;
        return *this;
    }

    // Exposes the member function M under `name`:
    //   .method<&Counter::increment>("increment")
    template <auto M>
    TypeRegistration& method(std::string name) {
        static_assert(std::is_same_v<typename detail::member_function<decltype(M)>::object, T>,
                      "the member function must belong to the registered type");
        entry_->methods.push_back({std::move(name), &detail::call_member<M>});
        return *this;
    }

private:
    friend class BaseManager;
    explicit TypeRegistration(detail::RegisteredType* entry) : entry_(entry) {}
    detail::RegisteredType* entry_;
};

// The server side run in the calling process (Python's Server): for a remote manager.
class Server {
public:
    // Serves until a client sends the shutdown request (BaseManager::shutdown on a connected
    // client does). Clients are served by threads of their own; after the request no new client
    // is accepted (the listener closes, removing its socket file), and the clients already
    // connected are served until they disconnect.
    void serve_forever();
    // The address listened on, with the port the kernel chose when 0 was asked for.
    const Address& address() const;

private:
    friend class BaseManager;
    explicit Server(std::shared_ptr<detail::ServerState> state) : state_(std::move(state)) {}
    std::shared_ptr<detail::ServerState> state_;
};

// ---- Proxies ----

// The handle every proxy shares (Python's BaseProxy): which object, in which server.
class BaseProxy {
public:
    // An empty proxy, a place to move a real one into; calling through it is a UsageError.
    BaseProxy() = default;

    // The type id the object was created with ("dict", "list", "Counter", ...).
    const std::string& type_id() const;
    // The object's id in its server.
    std::uint64_t object_id() const;
    // The server's address.
    Address address() const;
    bool valid() const noexcept { return state_ != nullptr; }

    // Calls `method` with each argument encoded on its own and returns the encoded result
    // (Python's _callmethod). The typed proxies and call<R>() go through here.
    detail::Blob callmethod(std::string_view method, const detail::Blobs& args = {}) const;

    // Python's repr: <DictProxy object, typeid 'dict' at 0x...>.
    std::string repr() const;

    // How a proxy travels: its token; the receiver connects to the server and takes a reference.
    // Inside a container's NestedProxies scope the token is noted there too, so that the container
    // keeps the object alive while it holds this value.
    template <class Archive>
    void save(Archive& ar) const {
        const detail::ProxyToken saved = token();
        detail::NestedProxies::note(saved);
        ar(saved);
    }
    template <class Archive>
    void load(Archive& ar) {
        detail::ProxyToken token;
        ar(token);
        adopt(token);
    }

protected:
    explicit BaseProxy(std::shared_ptr<detail::ProxyState> state) noexcept : state_(std::move(state)) {}
    template <class R, class... A>
    R call_typed(std::string_view method, const A&... args) const {
        return detail::decode_result<R>(callmethod(method, detail::encode_args(args...)));
    }
    virtual const char* proxy_name() const { return "BaseProxy"; }

    // `value` encoded for a container of this proxy's server to store; the ids of the objects of
    // that server its proxies refer to are appended to `held`.
    template <class V>
    detail::Blob encode_stored(const V& value, std::vector<std::uint64_t>& held) const {
        const detail::NestedProxies scope;
        detail::Blob out = dumps(value);
        if (!scope.tokens().empty()) held_here(scope.tokens(), held);
        return out;
    }
    // Calls `method` with `args`, then `value`, then, when the value holds proxies of this server,
    // their ids: the container takes a reference to each for as long as it stores the value.
    template <class V>
    detail::Blob call_storing(std::string_view method, detail::Blobs args, const V& value) const {
        std::vector<std::uint64_t> held;
        args.push_back(encode_stored(value, held));
        if (!held.empty()) args.push_back(dumps(held));
        return callmethod(method, args);
    }
    // A value taken out of a container: its proxies take over the references the container held.
    template <class V>
    V adopt_taken(const detail::TakenValue& taken) const {
        if (taken.held.empty()) return loads<V>(taken.value);
        const detail::ReferenceGrant grant(token(), taken.held);
        return loads<V>(taken.value);
    }

private:
    friend class BaseManager;
    detail::ProxyToken token() const;
    void adopt(const detail::ProxyToken& token);
    void held_here(const std::vector<detail::ProxyToken>& tokens, std::vector<std::uint64_t>& held) const;

    std::shared_ptr<detail::ProxyState> state_;
};

// A proxy of a registered user type: call<R>("method", args...).
class Proxy : public BaseProxy {
public:
    Proxy() = default;
    explicit Proxy(BaseProxy base) : BaseProxy(std::move(base)) {}

    // Calls an exposed method; R is what it returns (void for nothing). AttributeError when the
    // type does not expose `method`; what the method throws in the server: an mproc exception
    // as itself, any other as a RemoteError with its type name.
    template <class R = void, class... A>
    R call(std::string_view method, const A&... args) const {
        return call_typed<R>(method, args...);
    }

protected:
    const char* proxy_name() const override { return "AutoProxy"; }
};

// A managed dict (Python's DictProxy). Insertion-ordered, as Python's dict is.
//
// A proxy stored as a value (a dict of lists, a dict of dicts) keeps its object alive for as long
// as the dict holds it, also when the handle it was stored from is gone; reading it back gives a
// working proxy. Only proxies of the dict's own manager are kept alive that way.
template <class K, class V>
class DictProxy : public BaseProxy {
    static_assert(assert_encodable<K>() && assert_encodable<V>());

public:
    DictProxy() = default;
    explicit DictProxy(BaseProxy base) : BaseProxy(std::move(base)) {}

    detail::ItemRef<DictProxy, K, V> operator[](const K& key) const { return {*this, key}; }
    // The value of `key`; KeyError (what(): the key's repr) when there is none.
    V getitem(const K& key) const {
        std::optional<detail::Blob> found = call_typed<std::optional<detail::Blob>>("get", key);
        if (!found) throw KeyError(detail::py_repr(key));
        return loads<V>(*found);
    }
    std::optional<V> get(const K& key) const {
        std::optional<detail::Blob> found = call_typed<std::optional<detail::Blob>>("get", key);
        if (!found) return std::nullopt;
        return loads<V>(*found);
    }
    // Python's get(key, default).
    V get(const K& key, const V& fallback) const { return get(key).value_or(fallback); }
    void set(const K& key, const V& value) const { call_storing("__setitem__", {dumps(key)}, value); }
    // Python's del d[key]; KeyError when there is none.
    void erase(const K& key) const {
        if (!call_typed<bool>("__delitem__", key)) throw KeyError(detail::py_repr(key));
    }
    V pop(const K& key) const {
        auto taken = call_typed<std::optional<detail::TakenValue>>("pop", key);
        if (!taken) throw KeyError(detail::py_repr(key));
        return adopt_taken<V>(*taken);
    }
    V pop(const K& key, const V& fallback) const {
        auto taken = call_typed<std::optional<detail::TakenValue>>("pop", key);
        return taken ? adopt_taken<V>(*taken) : fallback;
    }
    // The last item inserted, removed; KeyError("popitem(): dictionary is empty") when empty.
    std::pair<K, V> popitem() const {
        auto item = call_typed<std::pair<detail::Blob, detail::TakenValue>>("popitem");
        return {loads<K>(item.first), adopt_taken<V>(item.second)};
    }
    // The value of `key`, set to `fallback` first when there is none (Python's setdefault).
    V setdefault(const K& key, const V& fallback = V{}) const {
        return loads<V>(call_storing("setdefault", {dumps(key)}, fallback));
    }
    std::vector<K> keys() const { return decode_all<K>(call_typed<detail::Blobs>("keys")); }
    std::vector<V> values() const { return decode_all<V>(call_typed<detail::Blobs>("values")); }
    std::vector<std::pair<K, V>> items() const {
        auto raw = call_typed<std::vector<std::pair<detail::Blob, detail::Blob>>>("items");
        std::vector<std::pair<K, V>> out;
        out.reserve(raw.size());
        for (auto& [key, value] : raw) out.emplace_back(loads<K>(key), loads<V>(value));
        return out;
    }
    // Adds or replaces the items of any range of pairs (a std::map, a vector of pairs...).
    template <class R>
    void update(const R& pairs) const {
        std::vector<std::pair<detail::Blob, detail::Blob>> raw;
        std::vector<std::vector<std::uint64_t>> held;
        bool holds = false;
        for (const auto& [key, value] : pairs) {
            held.emplace_back();
            raw.emplace_back(dumps(static_cast<const K&>(key)), encode_stored(static_cast<const V&>(value), held.back()));
            holds = holds || !held.back().empty();
        }
        detail::Blobs args{dumps(raw)};
        if (holds) args.push_back(dumps(held));
        callmethod("update", args);
    }
    void update(std::initializer_list<std::pair<const K, V>> pairs) const { update<>(pairs); }
    bool contains(const K& key) const { return call_typed<bool>("__contains__", key); }
    std::size_t size() const { return call_typed<std::uint64_t>("__len__"); }
    bool empty() const { return size() == 0; }
    void clear() const { call_typed<void>("clear"); }
    // A plain copy of the contents (Python's copy(), which returns a dict).
    template <class Map = std::map<K, V>>
    Map copy() const {
        Map out;
        for (auto& [key, value] : items()) out.insert_or_assign(std::move(key), std::move(value));
        return out;
    }

    // Iteration, as Python's iter(d): `for (K key : d)` reads one key per call, in insertion order,
    // from an iterator in the server; iter_items() reads (key, value) pairs the same way. A dict that
    // changes size while it is iterated ends the iteration with UsageError("dictionary changed size
    // during iteration"), one whose keys changed with UsageError("dictionary keys changed during
    // iteration") (Python: RuntimeError), at the next step, the last one included.
    auto begin() const { return detail::StepIterator<DictWalk<K>>(DictWalk<K>{*this}); }
    std::default_sentinel_t end() const { return {}; }
    auto iter_items() const { return detail::StepRange<DictWalk<std::pair<K, V>>>{DictWalk<std::pair<K, V>>{*this}}; }

    // The contents equal those of a plain map (any map type: std::map, std::unordered_map...).
    template <class Map>
        requires requires { typename Map::key_type; typename Map::mapped_type; }
    friend bool operator==(const DictProxy& d, const Map& plain) {
        return d.template copy<Map>() == plain;
    }

    // Python's str(d): {0: 0, 1: 2}, in insertion order.
    std::string str() const { return detail::py_repr_mapping(items()); }
    friend std::ostream& operator<<(std::ostream& os, const DictProxy& d) { return os << d.str(); }

protected:
    const char* proxy_name() const override { return "DictProxy"; }

private:
    // One step of the server-side iterator: `Value` is K (keys) or std::pair<K, V> (items).
    template <class Value>
    struct DictWalk {
        using value_type = Value;
        static constexpr std::uint64_t kNone = ~std::uint64_t{0};
        static constexpr bool with_value = !std::is_same_v<Value, K>;
        DictProxy dict;
        std::uint64_t position = 0;
        std::uint64_t size = kNone;
        std::uint64_t version = kNone;
        bool done = false;

        // Python's iter(d): the dict's size and version now are what the steps check against.
        void start() { step(kNone); }
        std::optional<Value> operator()() {
            if (done) return std::nullopt;
            detail::DictStep next = step(position);
            if (!next.key) {
                done = true;
                return std::nullopt;
            }
            ++position;
            if constexpr (with_value) {
                return Value(loads<K>(*next.key), loads<V>(next.value.value_or(detail::Blob{})));
            } else {
                return loads<K>(*next.key);
            }
        }
        detail::DictStep step(std::uint64_t at) {
            auto next = dict.template call_typed<detail::DictStep>("__iter_step__", at, size, version, with_value);
            size = next.size;
            version = next.version;
            return next;
        }
    };

    template <class T>
    static std::vector<T> decode_all(const detail::Blobs& raw) {
        std::vector<T> out;
        out.reserve(raw.size());
        for (const auto& each : raw) out.push_back(loads<T>(each));
        return out;
    }
};

// A managed list (Python's ListProxy). Indexes may be negative, counting from the end.
//
// A proxy stored as an element (a list of dicts, a list of lists) keeps its object alive for as
// long as the list holds it, also when the handle it was stored from is gone; reading it back
// gives a working proxy. Only proxies of the list's own manager are kept alive that way.
template <class T>
class ListProxy : public BaseProxy {
    static_assert(assert_encodable<T>());

public:
    ListProxy() = default;
    explicit ListProxy(BaseProxy base) : BaseProxy(std::move(base)) {}

    detail::ItemRef<ListProxy, std::int64_t, T> operator[](std::int64_t index) const { return {*this, index}; }
    // IndexError("list index out of range").
    T getitem(std::int64_t index) const { return call_typed<T>("__getitem__", index); }
    // IndexError("list assignment index out of range").
    void set(std::int64_t index, const T& value) const { call_storing("__setitem__", {dumps(index)}, value); }
    void append(const T& value) const { call_storing("append", {}, value); }
    template <class R>
    void extend(const R& values) const {
        detail::Blobs raw;
        std::vector<std::vector<std::uint64_t>> held;
        bool holds = false;
        for (const auto& value : values) {
            held.emplace_back();
            raw.push_back(encode_stored(static_cast<const T&>(value), held.back()));
            holds = holds || !held.back().empty();
        }
        detail::Blobs args{dumps(raw)};
        if (holds) args.push_back(dumps(held));
        callmethod("extend", args);
    }
    void extend(std::initializer_list<T> values) const { extend<>(values); }
    // Python's l += values: extends the list in the server.
    template <class R>
    const ListProxy& operator+=(const R& values) const {
        extend(values);
        return *this;
    }
    const ListProxy& operator+=(std::initializer_list<T> values) const {
        extend<>(values);
        return *this;
    }
    // Python's l *= n: the elements n times over, in the server; n <= 0 empties the list.
    const ListProxy& operator*=(std::int64_t n) const {
        call_typed<void>("__imul__", n);
        return *this;
    }
    // Python's l + values and l * n: a plain list, the proxy's elements and then the others.
    friend std::vector<T> operator+(const ListProxy& l, const std::vector<T>& values) {
        std::vector<T> out = l.copy();
        out.insert(out.end(), values.begin(), values.end());
        return out;
    }
    friend std::vector<T> operator*(const ListProxy& l, std::int64_t n) {
        const std::vector<T> once = l.copy();
        std::vector<T> out;
        for (std::int64_t i = 0; i < n; ++i) out.insert(out.end(), once.begin(), once.end());
        return out;
    }
    friend std::vector<T> operator*(std::int64_t n, const ListProxy& l) { return l * n; }
    // ValueError("<repr> is not in list"), as Python's: "5 is not in list", "'a' is not in list".
    // (The server holds encodings and cannot print the value; the proxy names it.)
    std::size_t index(const T& value) const {
        try {
            return call_typed<std::uint64_t>("index", value);
        } catch (const ValueError&) {
            throw ValueError(detail::py_repr(value) + " is not in list");
        }
    }
    void insert(std::int64_t index, const T& value) const { call_storing("insert", {dumps(index)}, value); }
    // IndexError("pop from empty list") / ("pop index out of range").
    T pop(std::int64_t index = -1) const { return adopt_taken<T>(call_typed<detail::TakenValue>("pop", index)); }
    // ValueError("list.remove(x): x not in list").
    void remove(const T& value) const { call_typed<void>("remove", value); }
    std::size_t count(const T& value) const { return call_typed<std::uint64_t>("count", value); }
    bool contains(const T& value) const { return call_typed<bool>("__contains__", value); }
    void erase(std::int64_t index) const { call_typed<void>("__delitem__", index); }
    void reverse() const { call_typed<void>("reverse"); }
    // Python's sort(reverse=...): stable, in T's natural order (operator<), or by `less`. The
    // elements are compared here, where their type is known, and the server reorders them in one
    // step, only if nobody changed the list in between (otherwise it starts over).
    void sort(bool reverse = false) const
        requires requires(const T& a, const T& b) { a < b; }
    {
        sort(std::less<>{}, reverse);
    }
    template <class Less>
        requires std::predicate<Less&, const T&, const T&>
    void sort(Less less, bool reverse = false) const {
        for (;;) {
            auto [fingerprint, raw] = call_typed<std::pair<std::uint64_t, detail::Blobs>>("__sort_snapshot__");
            const std::vector<T> values = decode_all(raw);
            std::vector<std::uint64_t> order(values.size());
            for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
            std::stable_sort(order.begin(), order.end(), [&](std::uint64_t a, std::uint64_t b) {
                return reverse ? less(values[b], values[a]) : less(values[a], values[b]);
            });
            if (call_typed<bool>("__permute__", fingerprint, order)) return;
        }
    }
    void clear() const { call_typed<void>("clear"); }
    std::size_t size() const { return call_typed<std::uint64_t>("__len__"); }
    bool empty() const { return size() == 0; }
    // Python's l[start:stop], a copy; bounds are clamped as Python clamps them.
    std::vector<T> slice(std::int64_t start, std::int64_t stop) const {
        return decode_all(call_typed<detail::Blobs>("slice", start, stop));
    }
    // Python's l[:] or copy(): a plain copy of the elements.
    std::vector<T> copy() const { return decode_all(call_typed<detail::Blobs>("copy")); }

    // Iteration, as Python's iter() over __getitem__: `for (T x : l)` reads l[0], l[1], ... one
    // call each, until IndexError; it sees the changes made to the list meanwhile.
    auto begin() const { return detail::StepIterator<ListWalk>(ListWalk{*this}); }
    std::default_sentinel_t end() const { return {}; }

    // The elements equal those of a plain vector.
    friend bool operator==(const ListProxy& l, const std::vector<T>& plain) { return l.copy() == plain; }

    // Python's str(l): ['0', '1'].
    std::string str() const { return detail::py_repr_sequence(copy(), "[", "]"); }
    friend std::ostream& operator<<(std::ostream& os, const ListProxy& l) { return os << l.str(); }

protected:
    const char* proxy_name() const override { return "ListProxy"; }

private:
    struct ListWalk {
        using value_type = T;
        ListProxy list;
        std::int64_t next = 0;
        bool done = false;

        std::optional<T> operator()() {
            if (done) return std::nullopt;
            try {
                return list.getitem(next++);
            } catch (const IndexError&) {
                done = true;
                return std::nullopt;
            }
        }
    };

    static std::vector<T> decode_all(const detail::Blobs& raw) {
        std::vector<T> out;
        out.reserve(raw.size());
        for (const auto& each : raw) out.push_back(loads<T>(each));
        return out;
    }
};

// A managed namespace (Python's Namespace): attributes by name, each of any Encodable type.
// Reading gives a copy. As in Python's NamespaceProxy, a name that starts with '_' is an
// attribute of the proxy itself, not of the namespace: shared by the copies of this handle in
// this process (a forked child inherits a copy; a proxy received any other way has none), not
// listed by names() nor printed by str().
// A proxy stored as an attribute keeps its object alive while the namespace holds it.
class Namespace : public BaseProxy {
public:
    Namespace() = default;
    explicit Namespace(BaseProxy base) : BaseProxy(std::move(base)) {}

    template <class T>
    void set(std::string_view name, const T& value) const {
        static_assert(assert_encodable<T>());
        if (local_name(name)) return set_local(name, detail::type_fingerprint<T>(), std::make_shared<const T>(value));
        std::string shown;
        if constexpr (std::is_base_of_v<BaseProxy, T>) {
            shown = value.repr();
        } else {
            shown = detail::py_repr(value);
        }
        call_storing("__setattr__", {dumps(std::string(name)), dumps(detail::type_fingerprint<T>()), dumps(shown)},
                     value);
    }
    // A string literal is stored as a std::string: read it back with get<std::string>.
    void set(std::string_view name, const char* text) const { set(name, std::string(text)); }
    // AttributeError("'Namespace' object has no attribute 'x'") when there is none (for a '_'
    // name: "'NamespaceProxy' object has no attribute '_x'"); DecodeError when it was set as
    // another type.
    template <class T>
    T get(std::string_view name) const {
        static_assert(assert_encodable<T>());
        if (local_name(name)) {
            auto [fingerprint, value] = get_local(name);
            if (fingerprint != detail::type_fingerprint<T>()) wrong_type(name, fingerprint, typeid(T));
            return *static_cast<const T*>(value.get());
        }
        auto [fingerprint, value] = call_typed<std::pair<std::string, detail::Blob>>("__getattr__", std::string(name));
        if (fingerprint != detail::type_fingerprint<T>()) wrong_type(name, fingerprint, typeid(T));
        return loads<T>(value);
    }
    bool contains(std::string_view name) const;
    // Python's delattr; AttributeError when there is none.
    void erase(std::string_view name) const;
    // The namespace's attribute names, in the order they were first set.
    std::vector<std::string> names() const { return call_typed<std::vector<std::string>>("names"); }
    // Python's str(ns): Namespace(a=1, b='x'), each value's repr as it was when set, sorted.
    std::string str() const { return call_typed<std::string>("__repr__"); }
    friend std::string to_string(const Namespace& ns) { return ns.str(); }
    friend std::ostream& operator<<(std::ostream& os, const Namespace& ns) { return os << ns.str(); }

protected:
    const char* proxy_name() const override { return "NamespaceProxy"; }

private:
    // The '_' attributes: name -> (type fingerprint, the value). A proxy kept there keeps its
    // object alive, as Python's proxy attribute does.
    using LocalValue = std::pair<std::string, std::shared_ptr<const void>>;
    struct LocalAttributes {
        std::mutex mutex;
        std::map<std::string, LocalValue, std::less<>> values;
    };
    static bool local_name(std::string_view name) { return !name.empty() && name.front() == '_'; }
    void set_local(std::string_view name, std::string fingerprint, std::shared_ptr<const void> value) const;
    LocalValue get_local(std::string_view name) const;
    LocalAttributes& locals() const;
    [[noreturn]] static void no_local_attribute(std::string_view name);
    [[noreturn]] static void wrong_type(std::string_view name, const std::string& stored, const std::type_info& asked);

    std::shared_ptr<LocalAttributes> local_ = std::make_shared<LocalAttributes>();
};

// A managed value (Python's ValueProxy: get, set, .value).
template <class T>
class ValueProxy : public BaseProxy {
    static_assert(assert_encodable<T>());

public:
    ValueProxy() = default;
    explicit ValueProxy(BaseProxy base) : BaseProxy(std::move(base)) {}
    T get() const { return call_typed<T>("get"); }
    void set(const T& value) const { call_typed<void>("set", value); }
    T value() const { return get(); }
    void set_value(const T& value) const { set(value); }

protected:
    const char* proxy_name() const override { return "ValueProxy"; }
};

// A managed fixed-size array (Python's ArrayProxy: len, get and set an element).
template <class T>
class ArrayProxy : public BaseProxy {
    static_assert(assert_encodable<T>());

public:
    ArrayProxy() = default;
    explicit ArrayProxy(BaseProxy base) : BaseProxy(std::move(base)) {}
    detail::ItemRef<ArrayProxy, std::int64_t, T> operator[](std::int64_t index) const { return {*this, index}; }
    T getitem(std::int64_t index) const { return call_typed<T>("__getitem__", index); }
    void set(std::int64_t index, const T& value) const { call_typed<void>("__setitem__", index, value); }
    std::size_t size() const { return call_typed<std::uint64_t>("__len__"); }
    std::vector<T> copy() const {
        std::vector<T> out;
        for (const auto& each : call_typed<detail::Blobs>("copy")) out.push_back(loads<T>(each));
        return out;
    }

protected:
    const char* proxy_name() const override { return "ArrayProxy"; }
};

// A managed queue (Python's queue.Queue through a manager). get and put block; with a timeout they
// throw Empty / Full when it runs out.
template <class T>
class QueueProxy : public BaseProxy {
    static_assert(assert_encodable<T>());

public:
    QueueProxy() = default;
    explicit QueueProxy(BaseProxy base) : BaseProxy(std::move(base)) {}

    void put(const T& item) const { call_typed<void>("put", item, std::int64_t{-1}); }
    template <class Rep, class Period>
    void put(const T& item, std::chrono::duration<Rep, Period> timeout) const {
        call_typed<void>("put", item, detail::timeout_ns(timeout));
    }
    void put_nowait(const T& item) const { call_typed<void>("put", item, std::int64_t{0}); }
    T get() const { return call_typed<T>("get", std::int64_t{-1}); }
    template <class Rep, class Period>
    T get(std::chrono::duration<Rep, Period> timeout) const {
        return call_typed<T>("get", detail::timeout_ns(timeout));
    }
    T get_nowait() const { return call_typed<T>("get", std::int64_t{0}); }
    std::size_t qsize() const { return call_typed<std::uint64_t>("qsize"); }
    bool empty() const { return qsize() == 0; }
    bool full() const { return call_typed<bool>("full"); }

protected:
    const char* proxy_name() const override { return "AutoProxy[Queue]"; }
    template <class Rep, class Period>
    static std::int64_t to_nanoseconds(std::chrono::duration<Rep, Period> timeout) {
        return detail::timeout_ns(timeout);
    }
};

// A managed JoinableQueue: task_done() and join() besides the queue's methods.
template <class T>
class JoinableQueueProxy : public QueueProxy<T> {
public:
    JoinableQueueProxy() = default;
    explicit JoinableQueueProxy(BaseProxy base) : QueueProxy<T>(std::move(base)) {}
    // ValueError("task_done() called too many times").
    void task_done() const { this->template call_typed<void>("task_done"); }
    void join() const { this->template call_typed<void>("join"); }

protected:
    const char* proxy_name() const override { return "AutoProxy[JoinableQueue]"; }
};

// A managed Lock, RLock, Semaphore or BoundedSemaphore (Python's AcquirerProxy). Lockable, so
// std::scoped_lock and std::unique_lock work (Python's `with`). The lock lives in the server; an
// RLock is owned by the calling thread's connection.
class AcquirerProxy : public BaseProxy {
public:
    AcquirerProxy() = default;
    explicit AcquirerProxy(BaseProxy base) : BaseProxy(std::move(base)) {}

    bool acquire(bool blocking = true) const { return call_typed<bool>("acquire", std::int64_t{blocking ? -1 : 0}); }
    template <class Rep, class Period>
    bool acquire(std::chrono::duration<Rep, Period> timeout) const {
        return call_typed<bool>("acquire", detail::timeout_ns(timeout));
    }
    // ValueError for a semaphore released too often; UsageError for an RLock not held here.
    void release() const { call_typed<void>("release"); }

    void lock() const { acquire(); }
    bool try_lock() const { return acquire(false); }
    void unlock() const { release(); }

protected:
    const char* proxy_name() const override { return "AcquirerProxy"; }
};

// A managed Condition (Python's ConditionProxy), with its own RLock in the server.
class ConditionProxy : public AcquirerProxy {
public:
    ConditionProxy() = default;
    explicit ConditionProxy(BaseProxy base) : AcquirerProxy(std::move(base)) {}

    // Releases the lock, waits for a notify, takes the lock back. The lock must be held.
    void wait() const { call_typed<bool>("wait", std::int64_t{-1}); }
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) const {
        return call_typed<bool>("wait", detail::timeout_ns(timeout));
    }
    // Waits until predicate() is true (checked with the lock held), as Python's wait_for.
    template <class Predicate>
    bool wait_for(Predicate predicate) const {
        while (!predicate()) wait();
        return true;
    }
    template <class Predicate, class Rep, class Period>
    bool wait_for(Predicate predicate, std::chrono::duration<Rep, Period> timeout) const {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        bool result = predicate();
        while (!result) {
            const auto left = deadline - std::chrono::steady_clock::now();
            if (left <= left.zero()) break;
            wait(left);
            result = predicate();
        }
        return result;
    }
    void notify(int n = 1) const { call_typed<void>("notify", std::int64_t{n}); }
    void notify_all() const { call_typed<void>("notify_all"); }

protected:
    const char* proxy_name() const override { return "ConditionProxy"; }
};

// A managed Event (Python's EventProxy).
class EventProxy : public BaseProxy {
public:
    EventProxy() = default;
    explicit EventProxy(BaseProxy base) : BaseProxy(std::move(base)) {}
    bool is_set() const { return call_typed<bool>("is_set"); }
    void set() const { call_typed<void>("set"); }
    void clear() const { call_typed<void>("clear"); }
    // True once the flag is set (Python's wait() returns the flag), as mproc::Event::wait().
    bool wait() const { return call_typed<bool>("wait", std::int64_t{-1}); }
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) const {
        return call_typed<bool>("wait", detail::timeout_ns(timeout));
    }

protected:
    const char* proxy_name() const override { return "EventProxy"; }
};

// A managed Barrier (Python's BarrierProxy). BrokenBarrierError as threading.Barrier raises it.
class BarrierProxy : public BaseProxy {
public:
    BarrierProxy() = default;
    explicit BarrierProxy(BaseProxy base) : BaseProxy(std::move(base)) {}
    // The arrival index, 0 .. parties - 1. Without a timeout the barrier's default one applies
    // (SyncManager::Barrier's `timeout`; none: wait forever); when a wait times out the barrier
    // breaks, and every party waiting in it gets BrokenBarrierError.
    int wait() const { return static_cast<int>(call_typed<std::int64_t>("wait")); }
    template <class Rep, class Period>
    int wait(std::chrono::duration<Rep, Period> timeout) const {
        return static_cast<int>(call_typed<std::int64_t>("wait", detail::timeout_ns(timeout)));
    }
    void abort() const { call_typed<void>("abort"); }
    void reset() const { call_typed<void>("reset"); }
    int parties() const { return static_cast<int>(call_typed<std::int64_t>("parties")); }
    int n_waiting() const { return static_cast<int>(call_typed<std::int64_t>("n_waiting")); }
    bool broken() const { return call_typed<bool>("broken"); }

protected:
    const char* proxy_name() const override { return "BarrierProxy"; }
};

// ---- The members above whose results are the proxies: defined once the proxies are complete ----

template <class... A>
Proxy BaseManager::create(std::string_view type_id, const A&... args) {
    return Proxy(create_raw(type_id, detail::encode_args(args...)));
}

inline mproc::Namespace SyncManager::Namespace() { return mproc::Namespace(create_raw("Namespace", {})); }
inline AcquirerProxy SyncManager::Lock() { return AcquirerProxy(create_raw("Lock", {})); }
inline AcquirerProxy SyncManager::RLock() { return AcquirerProxy(create_raw("RLock", {})); }
inline AcquirerProxy SyncManager::Semaphore(int value) {
    return AcquirerProxy(create_raw("Semaphore", {dumps(std::int64_t{value})}));
}
inline AcquirerProxy SyncManager::BoundedSemaphore(int value) {
    return AcquirerProxy(create_raw("BoundedSemaphore", {dumps(std::int64_t{value})}));
}
inline ConditionProxy SyncManager::Condition() { return ConditionProxy(create_raw("Condition", {})); }
inline EventProxy SyncManager::Event() { return EventProxy(create_raw("Event", {})); }
inline BarrierProxy SyncManager::Barrier(int parties, const ServerCall& action,
                                         std::optional<std::chrono::nanoseconds> timeout) {
    detail::Blobs args{dumps(std::int64_t{parties}), dumps(timeout ? detail::timeout_ns(*timeout) : std::int64_t{-1})};
    for (auto& arg : server_call_arguments(action)) args.push_back(std::move(arg));
    return BarrierProxy(create_raw("Barrier", args));
}

}  // namespace mproc

// The managed Pool's proxies, which need the classes above.
#include "mproc/managed_pool.hpp"
