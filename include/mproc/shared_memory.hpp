#pragma once
// Named shared memory (Python's multiprocessing.shared_memory.SharedMemory): a block of bytes in
// /dev/shm that any process can attach to by name.
//
//   mproc::SharedMemory shm({.create = true, .size = 4096});   // a new name: psm_1a2b3c4d
//   auto bytes = shm.buf();                                     // std::span<std::byte>
//   ...
//   mproc::SharedMemory other({.name = shm.name()});           // attach, here or in another process
//
// Lifetime, with track = true (the default), as in Python: the name stays until unlink(), which
// removes it at once, whatever the others do; the memory stays valid for every process that has
// it mapped. So Python's pattern works in either order:
//
//   shm.close();   // this handle stops using the memory; the name stays
//   shm.unlink();  // the name goes (a second unlink(), here or anywhere: OSError ENOENT)
//
// What Python leaves to its resource tracker, mproc does by counting users, so that nothing is
// left in /dev/shm once the processes that used a segment are gone, however they ended. A process
// is a user from the moment it creates or attaches the segment (with track = true) until it ends:
// close() does not end it, so a closed handle can still unlink() or attach again, and the name
// never vanishes under a process that could still ask for it. A child forked while its parent has
// the segment open is a user too. Once every user has ended without unlink(), the name is removed
//  - by the exit of the last user, when it is an mproc process that created or attached a
//    SharedMemory itself (a main program, or a child that did so in its target): it removes, as
//    it ends, the segments nobody else alive uses;
//  - otherwise (users killed by SIGKILL, a forked child that outlived its parent) by the next
//    sweep: every creation or attachment of a SharedMemory in any mproc program removes the
//    segments of /dev/shm whose users have all ended; sweep_shared_memory() runs one on demand.
// A process that attached and ended never removes a segment that others still use (the fault of
// CPython issue 82300, where its resource tracker did, is not possible here). As in Python, a
// long-running process that creates segments and never unlinks them keeps them until it ends.
// The table of users lives in a small trailer at the end of the segment, after the bytes of
// buf(): a Python process can attach to an mproc segment by name (it sees the trailer as extra
// bytes at the end), and an mproc process can attach to a Python segment (without counting: it
// has no trailer, so it is never removed by mproc).
//
// With track = false, this handle does not make its process a user: the segment is never kept
// because of it. A segment created with track = false is not counted at all and stays until
// someone calls unlink() (Python's behaviour with track=False, 3.13).
//
// Limits of the guarantee: liveness is checked through /proc with the process's pid and start
// time, in the pid namespace of the process that checks (processes in other pid namespaces that
// share /dev/shm are not supported); at most 500 live processes can be users of one segment (more
// is an OSError EMFILE); a process that truncates the file in /dev/shm itself (ftruncate, outside
// mproc) makes the others' accesses fault, as with any file mapping, because a named file cannot
// be sealed.
// The synchronization primitives and Value/Array do not have that problem: their memory is sealed
// and never named (synchronize.hpp).
//
// Creating a segment reserves its memory (posix_fallocate): on a full /dev/shm the constructor
// throws OSError (code() == std::errc::no_space_on_device) instead of a SIGBUS at the first write.
//
// Errors, with Python's messages: UsageError("'size' must be a positive integer") for a negative
// size, UsageError("'size' must be a positive number different from zero") when creating with
// size 0, UsageError("'name' can only be None if create=True") when attaching without a name,
// UsageError("embedded null byte") for a name with a '\0' in it (Python's ValueError); OSError
// EINVAL for a name with '/' inside, ENAMETOOLONG for one over 200 characters;
// OSError with code() EEXIST when creating a name that exists, ENOENT when attaching a name that
// does not (Python's FileExistsError / FileNotFoundError) or unlinking one that is gone. Every
// OSError's message names the operation that failed and the segment ("unlinking shared memory
// 'psm_1a2b3c4d': No such file or directory"), and the system call when it was one step of it.
//
// A SharedMemory travels to other processes by name (as Python pickles it), under every start
// method and through queues: the receiver attaches when it decodes it, so the name must still
// exist then: do not unlink() before the receiver has attached.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace mproc {

namespace detail {
class Attachment;
}

struct SharedMemoryOptions {
    // Without a leading slash (one is accepted and dropped). Empty: a new unique name
    // "psm_<8 hex digits>" (creating only).
    std::string name{};
    bool create = false;
    // Bytes, when creating; signed so that a negative size is Python's error, not a huge number.
    std::int64_t size = 0;
    // Whether this handle counts as a user of the segment (see above).
    bool track = true;
};

class SharedMemory {
public:
    SharedMemory() = default;  // closed; for decoding and assignment
    explicit SharedMemory(SharedMemoryOptions options);

    // The name, without a leading slash (Python's name).
    const std::string& name() const noexcept { return name_; }
    // The usable size in bytes: what was asked for at creation.
    std::size_t size() const noexcept { return size_; }
    // The bytes; UsageError after close().
    std::span<std::byte> buf() const;
    bool tracked() const noexcept { return track_; }
    bool closed() const noexcept { return attachment_ == nullptr; }

    // Stops using the memory through this handle (copies share one mapping: it is unmapped when
    // the last of them is closed or destroyed). The name stays (see above). Idempotent.
    void close() noexcept;
    // Removes the name from /dev/shm now (POSIX shm_unlink), open or closed (Python's order
    // close() then unlink() works); processes that have it mapped keep their memory. OSError
    // ENOENT if the name is already gone (unlinked, here or elsewhere).
    void unlink();

    // Python's repr: SharedMemory('psm_1a2b3c4d', size=4096)
    std::string repr() const;

    template <class Archive>
    void save(Archive& ar) const {
        ar(name_, track_);
    }
    template <class Archive>
    void load(Archive& ar) {
        std::string name;
        bool track = true;
        ar(name, track);
        *this = SharedMemory(SharedMemoryOptions{.name = std::move(name), .create = false, .size = 0, .track = track});
    }

private:
    std::shared_ptr<detail::Attachment> attachment_;
    std::string name_;
    std::size_t size_ = 0;
    bool track_ = true;
};

// Removes from /dev/shm the mproc segments whose attached processes have all ended, and the
// shared buffers nobody keeps any more (shared_buffer.hpp); returns how many it removed. Runs by
// itself at every create/attach and at the end of every mproc program.
int sweep_shared_memory();

}  // namespace mproc
