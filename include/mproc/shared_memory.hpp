#pragma once
// Named shared memory (Python's multiprocessing.shared_memory.SharedMemory): a block of bytes in
// /dev/shm that any process can attach to by name.
//
//   mproc::SharedMemory shm({.create = true, .size = 4096});   // a new name: psm_1a2b3c4d
//   auto bytes = shm.buf();                                     // std::span<std::byte>
//   ...
//   mproc::SharedMemory other({.name = shm.name()});           // attach, here or in another process
//
// Lifetime, with track = true (the default): the segment is reference-counted by the processes
// attached to it. A process is attached from create/attach until its last handle to the segment
// is closed (close(), or the destruction of every copy), or until it ends, however it ends; a
// child forked while its parent is attached is attached too. The segment's name is removed from
// /dev/shm
//  - at once, when the last attached process closes it (so a segment is never removed while a
//    process still uses it: the fault of CPython issue 82300, where any process that attached
//    removed the segment when it exited, is not possible here);
//  - when the attached processes all ended without closing it (killed by SIGKILL, or children that
//    ended without destroying their handles), by the next sweep: every creation or attachment of
//    a SharedMemory in any mproc program, and the end of every mproc main program, removes the
//    segments of /dev/shm whose attached processes have all ended. sweep_shared_memory() runs one
//    on demand. So nothing is left behind once a program and its children are gone, unless the
//    whole program was killed; then the next mproc program that uses shared memory cleans up.
// The reference counts live in a small trailer at the end of the segment, after the bytes of
// buf(): a Python process can attach to an mproc segment by name (it sees the trailer as extra
// bytes at the end), and an mproc process can attach to a Python segment (without counting: it
// has no trailer, so it is never removed by mproc).
//
// With track = false, this handle does not count as a user: the segment is never removed
// because this process stopped using it. A segment created with track = false is not counted at
// all and stays until someone calls unlink() (Python's behaviour with track=False, 3.13).
// unlink() removes the name at once, whatever the counts, as in Python; the memory stays valid for
// every process that has it mapped.
//
// Limits of the guarantee: liveness is checked through /proc with the process's pid and start
// time, in the pid namespace of the process that checks (processes in other pid namespaces that
// share /dev/shm are not supported); at most 500 processes can be attached at once (more is an
// OSError); a process that truncates the file in /dev/shm itself (ftruncate, outside mproc) makes
// the others' accesses fault, as with any file mapping, because a named file cannot be sealed.
// The synchronization primitives and Value/Array do not have that problem: their memory is sealed
// and never named (synchronize.hpp).
//
// Creating a segment reserves its memory (posix_fallocate): on a full /dev/shm the constructor
// throws OSError (code() == std::errc::no_space_on_device) instead of a SIGBUS at the first write.
//
// Errors, with Python's messages: UsageError("'size' must be a positive integer") for a negative
// size, UsageError("'size' must be a positive number different from zero") when creating with
// size 0, UsageError("'name' can only be None if create=True") when attaching without a name;
// OSError with code() EEXIST when creating a name that exists, ENOENT when attaching a name that
// does not (Python's FileExistsError / FileNotFoundError).
//
// A SharedMemory travels to other processes by name (as Python pickles it), under every start
// method and through queues: the receiver attaches when it decodes it, so the segment must still
// exist then: keep a handle open in the sender until the receiver has attached.
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

    // Stops using the segment through this handle (copies share one attachment: the process
    // detaches when the last of them is closed or destroyed). Idempotent.
    void close() noexcept;
    // Removes the name from /dev/shm now (POSIX shm_unlink); processes that have it mapped keep
    // their memory. OSError with ENOENT if the name is already gone.
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

// Removes from /dev/shm the mproc segments whose attached processes have all ended; returns how
// many it removed. Runs by itself at every create/attach and at the end of every mproc program.
int sweep_shared_memory();

}  // namespace mproc
