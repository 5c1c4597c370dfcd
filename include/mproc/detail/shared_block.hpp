#pragma once
// The shared memory behind mproc's synchronization primitives and shared values: what their
// handles hold, and how a handle travels to a spawn or forkserver child. Not public API.
//
// Every primitive (a Lock, an Event, a Value's storage...) is a block inside a segment: an
// anonymous memory file (memfd) mapped MAP_SHARED and sealed against shrinking, so that it
// survives exec, can be handed to another process as a descriptor, and can never be truncated
// under a process that maps it. Small blocks share a segment (an arena); a segment lives as long
// as a handle to one of its blocks exists in this process, and its memory as long as any process
// maps it or holds its descriptor. Nothing is named, so nothing can be left behind in /dev/shm.
//
// Under fork a handle is simply inherited with the mapping. Under spawn and forkserver its
// save() sends the segment's descriptor with the start request (DescriptorRef) and the block's
// offset; load() maps the received segment (once per segment and process) and checks that the
// block there is of the expected kind and size.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "mproc/detail/descriptors.hpp"

namespace mproc::detail {

class Segment;

// What a block holds; checked when a block arrives in another process.
enum class BlockKind : std::uint32_t {
    mutex = 1,      // Lock, RLock
    semaphore = 2,  // Semaphore, BoundedSemaphore
    condition = 3,
    event = 4,
    barrier = 5,
    value = 6,      // the storage of Value, Array, RawValue, RawArray
    queue = 7,      // Queue, SimpleQueue, JoinableQueue
    pool_link = 8,  // a Pool worker's link: its progress word and its task and result rings
    pool_waiter = 9,  // a Pool's word for a thread that waits for a result and collects answers
};

// A handle to one block. Copies share the block (and keep its segment mapped).
class SharedBlock {
public:
    SharedBlock() noexcept = default;
    SharedBlock(std::shared_ptr<Segment> segment, std::byte* payload) noexcept
        : segment_(std::move(segment)), payload_(payload) {}
    SharedBlock(const SharedBlock&) = default;
    SharedBlock& operator=(const SharedBlock&) = default;
    // A moved-from handle is empty (its operations throw UsageError), never a dangling pointer.
    SharedBlock(SharedBlock&& other) noexcept
        : segment_(std::move(other.segment_)), payload_(std::exchange(other.payload_, nullptr)) {}
    SharedBlock& operator=(SharedBlock&& other) noexcept {
        segment_ = std::move(other.segment_);
        payload_ = std::exchange(other.payload_, nullptr);
        return *this;
    }

    std::byte* payload() const noexcept { return payload_; }
    explicit operator bool() const noexcept { return payload_ != nullptr; }
    const std::shared_ptr<Segment>& segment() const noexcept { return segment_; }

    template <class T>
    T* as() const noexcept {
        return reinterpret_cast<T*>(payload_);
    }

private:
    std::shared_ptr<Segment> segment_;
    std::byte* payload_ = nullptr;
};

// A new zero-filled block of `size` bytes aligned to `alignment` (a power of two, at most 4096).
// Throws OSError when the system refuses the memory.
SharedBlock allocate_shared_block(BlockKind kind, std::size_t size, std::size_t alignment);

// For encoding: the segment's descriptor, the block's offset in it, its size.
int shared_block_descriptor(const SharedBlock& block);
std::uint64_t shared_block_offset(const SharedBlock& block);
std::uint64_t shared_block_size(const SharedBlock& block);

// For decoding: maps the segment behind `fd` (taking ownership of the descriptor) and returns
// the block at `offset`. DecodeError unless a block of `kind` and `size` is there.
SharedBlock import_shared_block(int fd, std::uint64_t offset, BlockKind kind, std::uint64_t size);

// Throws UsageError("<what> has no shared memory (it was moved from)") for an empty handle.
void throw_moved_from(const char* what);

template <class Archive>
void save_shared_block(Archive& ar, const SharedBlock& block, const char* what) {
    if (!block) throw_moved_from(what);
    // The descriptor last: once received it is owned, and nothing after it can fail to decode.
    ar(shared_block_offset(block), shared_block_size(block), DescriptorRef{shared_block_descriptor(block), what});
}

template <class Archive>
SharedBlock load_shared_block(Archive& ar, BlockKind kind) {
    DescriptorRef ref;
    std::uint64_t offset = 0;
    std::uint64_t size = 0;
    ar(offset, size, ref);
    return import_shared_block(ref.fd, offset, kind, size);
}

}  // namespace mproc::detail
