#pragma once
// A manager whose server keeps track of named shared memory and removes it all at shutdown
// (Python's multiprocessing.managers.SharedMemoryManager).
//
//   mproc::SharedMemoryManager smm;
//   smm.start();                                          // SharedMemoryManager-1
//   mproc::SharedMemory shm = smm.SharedMemory(4096);
//   mproc::ShareableList sl = smm.ShareableList({1, 2.5, "howdy"});
//   ... hand them to children, which attach by name ...
//   smm.shutdown();                                        // both names are gone from /dev/shm
//
// As in Python, SharedMemory() and ShareableList() create the segment in the calling process and
// then ask the server to track its name (if that fails, the new segment is unlinked and the error
// thrown); the server unlinks every name it tracks when it ends:
//  - at shutdown(), at the manager's destruction, or at the end of the process that started it
//    (its exit sequence shuts the manager down), however the clients' handles stand;
//  - when the process that started it dies, even by SIGKILL: the server watches its owner and,
//    once it is gone, unlinks what it tracks and ends (every manager's server ends with its
//    owner; this one cleans up first). Nothing is left in /dev/shm.
// Processes that have a segment mapped keep their memory; attaching by name after the unlink is
// OSError ENOENT. If the server itself is killed, the segments stay with their users and go as
// any SharedMemory does (shared_memory.hpp): when the processes that used them have all ended.
//
// The server ignores SIGINT, as Python's manager servers do (a Ctrl-C in the terminal reaches
// the whole process group; the owner decides when the server ends).
//
// Everything else is BaseManager's (managers.hpp): register_type() for objects of your own types,
// get_server() to serve in this process (the segments it tracks are then unlinked when this
// process ends), connect() to a server elsewhere (the segments are created here and tracked
// there).
//
// Errors: SharedMemory() and ShareableList() before start() or connect() are UsageError("the
// manager is not started or connected") (Python: ValueError), after shutdown() UsageError("Manager
// has shut down"); a size SharedMemory refuses is its UsageError.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "mproc/managers.hpp"
#include "mproc/shareable_list.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc {

class SharedMemoryManager : public BaseManager {
public:
    explicit SharedMemoryManager(ManagerOptions options = {});

    // Starts the server process (BaseManager::start()), and its tracking of segments.
    void start();
    // BaseManager::shutdown(): the server unlinks every segment it tracks as it ends.
    void shutdown();

    // A new segment of `size` bytes with a new unique name, tracked by the server.
    mproc::SharedMemory SharedMemory(std::int64_t size);
    // A new ShareableList holding `sequence`, tracked by the server.
    mproc::ShareableList ShareableList(std::initializer_list<ShareableValue> sequence);
    mproc::ShareableList ShareableList(const std::vector<ShareableValue>& sequence);

    // The names the server tracks, oldest first (Python's SharedMemoryServer.list_segments).
    std::vector<std::string> list_segments();
    // Unlinks one tracked segment now and stops tracking it (Python's release_segment);
    // ValueError when the server does not track `name`.
    void release_segment(const std::string& name);

protected:
    const char* type_name() const override { return "SharedMemoryManager"; }

private:
    Proxy& tracker();
    Proxy tracker_;
};

}  // namespace mproc
