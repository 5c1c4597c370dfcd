#pragma once
// The manager's server: the objects it owns, their reference counts, and the threads that serve
// the clients (one per authenticated connection, as Python's Server has). A call that blocks (a
// lock's acquire, a queue's get) blocks only its own client: every built-in referent waits on a
// condition variable, which lets go of its mutex while it sleeps. A registered type's calls on
// one object run one at a time unless the type was registered concurrent().
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mproc/connection.hpp"
#include "mproc/detail/manager_types.hpp"

namespace mproc::detail {

struct ServerState;

// Who is calling: the server thread serving one client connection. An RLock is owned by it.
struct Caller {
    std::uint64_t connection = 0;
    // The server the call came to: a container takes references to its objects for the proxies
    // it stores (StoredReferences).
    ServerState* server = nullptr;
};

// The references a value stored in a container holds on other objects of its server (the proxies
// in the value: a list of dicts, a dict of lists), taken when the value is stored and given back
// when the last copy of it is dropped: overwritten, removed, or gone with its container.
class StoredReferences {
public:
    // Takes a reference to each object; ReferenceError, taking none, when one is gone.
    StoredReferences(ServerState& server, std::vector<std::uint64_t> ids);
    ~StoredReferences();
    StoredReferences(const StoredReferences&) = delete;
    StoredReferences& operator=(const StoredReferences&) = delete;
    const std::vector<std::uint64_t>& ids() const noexcept { return ids_; }
    // Another reference to each object, for a caller the value is handed to (pop): the caller's
    // proxies give them back.
    void hand_over() const;

private:
    ServerState& server_;
    std::vector<std::uint64_t> ids_;
};

// An object owned by the server.
class Referent {
public:
    virtual ~Referent() = default;
    // Runs `method`, possibly on several threads at once (each referent guards itself); throws
    // ServerError for the caller's mistakes (a missing key, an unexposed method), DecodeError for
    // arguments that are not what the method takes, and whatever a registered method throws.
    virtual Blob call(std::string_view method, const Blobs& args, const Caller& caller) = 0;
};

// A built-in referent for a SyncManager type id ("dict", "Lock", ...); nullptr if there is none.
std::shared_ptr<Referent> make_builtin(ServerState& server, std::string_view type_id, const Blobs& args);

// Refuses code references sent by a client that runs another program than this server
// (`sender`: its executable_identity()): they would point into an executable not loaded here.
// `what` names them ("a managed Barrier's action").
void check_same_program(std::string_view sender, std::string_view what);

// A referent of a registered user type.
std::shared_ptr<Referent> make_registered(const RegisteredType& type, const Blobs& args);

struct ServerState {
    ServerState(std::optional<Address> address, AuthKey key, std::map<std::string, RegisteredType> types);
    // Drops the objects before the rest: their stored proxies' references come back to a state
    // that then has no object left to find.
    ~ServerState();

    // Accepts clients on a thread of its own until the process ends.
    void start_accepting(const std::shared_ptr<ServerState>& self);
    // Blocks until a client asks for shutdown.
    void wait_for_shutdown();

    void serve_client(Connection connection, std::uint64_t connection_id);
    Blob dispatch(std::uint64_t id, std::string_view method, const Blobs& args, const Caller& caller);
    Blob call_server(std::string_view method, const Blobs& args);

    Listener listener;
    Address address;
    AuthKey authkey;
    std::map<std::string, RegisteredType> types;
    std::uint64_t instance;  // drawn at random: which server this is (ProxyToken::server)

    std::mutex creating_shared;  // held while an object of a shared type is created
    std::mutex mutex;            // guards the members below
    struct Entry {
        std::shared_ptr<Referent> referent;
        std::uint64_t refcount = 0;
        std::string type_id;
    };
    std::unordered_map<std::uint64_t, Entry> objects;
    std::map<std::string, std::uint64_t> shared_objects;
    std::uint64_t next_id = 1;
    std::uint64_t next_connection = 1;
    bool stopping = false;
    std::condition_variable stopped;
};

}  // namespace mproc::detail
