#pragma once
// Large messages without a copy: a SharedBuffer is a block of shared memory that is handed over,
// not copied, when it is put in a Queue or sent on a Connection.
//
//   mproc::SharedBuffer buffer(64 << 20);                 // 64 MiB, zero-filled
//   std::ranges::fill(buffer.span(), std::byte{7});        // write through span() / data()
//   queue.put(buffer);                                      // hands it over: `buffer` is now empty
//   ...
//   mproc::SharedBuffer received = queue.get();            // in the other process: the same bytes
//
// Ownership moves. A buffer has one owner at a time, the process that holds it. Encoding it (a
// Queue's put, a Connection's send, dumps, or as a member of any encodable value: a struct, a
// tuple, a vector of buffers) hands it over: the message carries the buffer's name, not its bytes,
// and the sending handle is emptied once the message has left, although put() and send() take it
// by const reference (as if it had been moved): when put() returns (or send(), or dumps()). A put
// or send that raises (Full, EPIPE, a value whose later member fails to encode) gives nothing
// away: the handle keeps the buffer, which can be sent again (detail/codec_handover.hpp). Decoding
// the message takes it over: the receiver maps the same memory, and becomes the owner. A message
// can be decoded once: decoding it a second time is a DecodeError. Dropping the owner's handle
// (its destructor, release()) frees the memory. The handle is move-only; within a process, move it
// where it is needed.
//
// One thread at a time: a handle that is being put or sent must not be put, sent, read or dropped
// by another thread meanwhile (encoding changes it through a const reference; nothing locks it).
//
// Not a Process argument: put it in a Queue or send it on a Connection that the child gets.
// Process(f, std::move(buffer)) compiles, and moves the handle into the Process, but what the
// child gets depends on the start method: under spawn and forkserver start() encodes the
// arguments, so the buffer is handed over to the child, which owns it; under fork the child runs
// with an inherited copy of the handle (see below), which it may read and write but not hand
// over, and the buffer stays with the parent's Process object until that is destroyed.
//
// How it works, and what it costs. The memory is a file in /dev/shm named psb_<16 hex digits>: a
// header page (magic, size, state, owner, under a robust mutex) followed by the bytes, page
// aligned. Creating one reserves its memory (posix_fallocate: a full /dev/shm is an OSError
// ENOSPC, not a SIGBUS later) and so costs what zero-filling N bytes costs. A handover costs a
// name in the message, a lock of the header, an unmap in the sender (its page tables go: about
// 1 ms for 64 MiB it wrote) and an open + mmap in the receiver (about 25 µs, whatever the size):
// the receiver's pages are mapped on first touch, so reading a few words costs a few page faults.
// docs/shared_buffer.md has the figure (queue.handoff.64mib) against memcpy. Dropping a buffer
// removes the name; the memory goes once the last mapping of it is gone.
//
// Why by name, and not like the primitives' memory (an anonymous memfd sent as a descriptor,
// detail/shared_block.hpp): a Queue is a ring in shared memory, and a descriptor cannot travel
// through memory; a name can, through a Queue, a Pipe, a socket to another program of the same
// machine, under fork, spawn and forkserver alike. Why not a SharedMemory: a SharedMemory is
// shared (every process that attaches it is a user, and its name stays until unlink()), so a
// long-running sender would keep every segment it ever sent; a SharedBuffer has one owner, and
// goes when its owner drops it or ends.
//
// Nothing is left in /dev/shm once the processes involved are gone, however they ended (for a
// killed process, once the next sweep has run):
//  - held: the buffer belongs to its owner (pid and start time in the header). It goes when the
//    owner drops it, at the owner's exit (the exit sweep of an mproc process), or, for an owner
//    killed by SIGKILL, at the next sweep after its death (every creation or attachment of a
//    SharedMemory and, at most every 100 ms per process, a creation of a SharedBuffer sweeps, in
//    any mproc program; sweep_shared_memory() does on demand). A sweep reads every mproc file of
//    /dev/shm: about 1 ms per 200 files.
//  - in transit (encoded, not yet decoded): the buffer is kept while its sender or the sender's
//    parent (the process that started it; for a fork server's child, the process that asked for
//    it) lives. So a child may put a buffer and be killed at once: its parent, or a sibling, still
//    receives it intact. A buffer whose message is never decoded (a queue nobody reads, a
//    message still waiting for the feeder thread of a producer that was killed, dumps() whose
//    bytes were dropped, a receiver that raised OSError) is removed by the first sweep after both
//    have ended. Only those two keep it: a main program killed after putting a buffer for its
//    child, or a grandchild and its parent both gone before the main program got the grandchild's
//    buffer, leave the receiver a DecodeError once a sweep has run.
// A forked child inherits its parent's handles with the mapping; it can read and write the memory
// but does not own it: handing over an inherited handle is a UsageError, and the parent dropping
// it removes only the name (the child's mapping stays valid until it drops its copy). That stays
// so when the child later receives the same buffer through a message: the received handle owns
// it, the inherited one still does not (dropping it does not remove the name).
//
// Errors: UsageError for a size of 0, for span() or a handover of an empty handle, and for a
// handover by a process that does not own the buffer (or that is in transit already); OSError for
// a size the system refuses (ENOMEM above 2^46 bytes, ENOSPC for a full /dev/shm). Decoding a
// message that names a buffer raises DecodeError naming the buffer and the cause: a name that is
// not a buffer's ("malformed"), a buffer that no longer exists (dropped, received already, or
// swept), one received already, one whose size is not the one in the message; a Connection's
// recv() closes the connection on it, as on any DecodeError. It raises OSError when the receiver
// itself runs short: out of descriptors (EMFILE, ENFILE) or memory (ENOMEM) to open the file, an
// mmap that fails, a header lock that fails. The message is consumed either way; after an
// OSError the buffer is still in transit, kept by its sender, and goes at a sweep once the sender
// and its parent have ended.
//
// Limits: as for SharedMemory, liveness is checked through /proc in the checker's pid namespace;
// /dev/shm must be shared by the processes involved (the same machine, the same mount namespace).
// A process that truncates the file by hand (ftruncate, outside mproc) makes the others' accesses
// fault.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace mproc {

class SharedBuffer;

namespace detail {

class BufferMapping;

// What a message carries for a buffer: its name, the segment's identity (a later segment of the
// same name is not this one), the number of the handover, and the size.
struct BufferHandover {
    std::string name;
    std::uint64_t segment_id = 0;
    std::uint64_t ticket = 0;
    std::uint64_t size = 0;
};

// The sender's step: marks the buffer in transit; the handle is emptied when the message has left,
// or keeps the buffer when it never does (detail/codec_handover.hpp).
BufferHandover hand_over(const SharedBuffer& buffer);
// The receiver's step: DecodeError unless `handover` names a buffer in transit under that ticket.
SharedBuffer take_over(const BufferHandover& handover);

}  // namespace detail

class SharedBuffer {
public:
    SharedBuffer() noexcept;  // empty; for decoding and assignment
    // `size` bytes of zero-filled shared memory, owned by this process.
    explicit SharedBuffer(std::size_t size);
    SharedBuffer(SharedBuffer&& other) noexcept;
    SharedBuffer& operator=(SharedBuffer&& other) noexcept;
    SharedBuffer(const SharedBuffer&) = delete;
    SharedBuffer& operator=(const SharedBuffer&) = delete;
    ~SharedBuffer();

    // The bytes; UsageError for an empty handle.
    std::span<std::byte> span() const;
    // nullptr and 0 for an empty handle.
    std::byte* data() const noexcept;
    std::size_t size() const noexcept;
    // The name in /dev/shm (psb_...); empty for an empty handle.
    const std::string& name() const noexcept;
    explicit operator bool() const noexcept { return mapping_ != nullptr; }

    // Drops the buffer now (its owner frees it; an inherited handle only unmaps). Idempotent.
    void release() noexcept;

    template <class Archive>
    void save(Archive& ar) const {
        const detail::BufferHandover handover = detail::hand_over(*this);
        ar(handover.name, handover.segment_id, handover.ticket, handover.size);
    }
    template <class Archive>
    void load(Archive& ar) {
        detail::BufferHandover handover;
        ar(handover.name, handover.segment_id, handover.ticket, handover.size);
        *this = detail::take_over(handover);
    }

private:
    friend detail::BufferHandover detail::hand_over(const SharedBuffer&);
    friend SharedBuffer detail::take_over(const detail::BufferHandover&);
    explicit SharedBuffer(std::unique_ptr<detail::BufferMapping> mapping) noexcept;

    // Mutable: a handover (encoding, through a const reference) empties the handle once it commits.
    mutable std::unique_ptr<detail::BufferMapping> mapping_;
};

}  // namespace mproc
