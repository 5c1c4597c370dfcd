#include "shm/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <utility>

#include "mproc/errors.hpp"
#include "base/fork_aware_mutex.hpp"

namespace mproc::detail {
namespace {

constexpr std::size_t kPageSize = 4096;
// Small blocks share segments of this size: one descriptor and one mapping per 1000 or so locks.
constexpr std::size_t kArenaSize = 64 * 1024;
// Blocks larger than this get a segment of their own, so that a big Array does not strand the
// rest of an arena, and its memory is returned as soon as it is no longer used.
constexpr std::size_t kLargeBlock = 16 * 1024;
// Payloads start on a cache line of their own: two locks used by different processes never share
// a line (false sharing would cost every contended acquisition a cache miss).
constexpr std::size_t kMinAlignment = 64;
constexpr std::size_t kFirstOffset = 64;  // after the segment header

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

[[noreturn]] void decode_error(const std::string& what) { throw DecodeError("shared memory: " + what); }

}  // namespace

// Segments mapped in this process, by file identity: a segment that arrives several times (two
// locks from one arena) is mapped once. Holds weak references, so it never keeps one alive.
struct SegmentTable {
    ForkAwareMutex mutex;
    std::map<std::pair<dev_t, ino_t>, std::weak_ptr<Segment>> mapped;
    // The arena new small blocks come from, while some handle keeps it alive.
    std::weak_ptr<Segment> current_arena;

    static SegmentTable& get() {
        static SegmentTable* table = new SegmentTable;  // never destroyed: handles may outlive statics
        return *table;
    }
};

std::shared_ptr<Segment> Segment::create(std::size_t size) {
    UniqueFd fd(::memfd_create("mproc", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) throw OSError("creating shared memory (memfd_create)", errno);
    // `call`: the step that failed; every message names the operation, then the step.
    auto fail = [](const char* call) {
        const int saved = errno;
        throw OSError(std::string("creating shared memory (") + call + ")", saved);
    };
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) fail("ftruncate");
    // Reserve the memory now: a memfd whose pages cannot be allocated later raises SIGBUS in
    // whoever touches them first. posix_fallocate returns the error instead of setting errno.
    if (int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size)); rc != 0) {
        errno = rc;
        fail("posix_fallocate");
    }
    // Nobody, including a peer that receives the descriptor, may shrink the segment under the
    // processes that map it (that would be SIGBUS for them) or change the seals.
    if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) fail("F_ADD_SEALS");
    MappedRegion mapping = MappedRegion::map_shared(fd.get(), size, "creating shared memory (mmap)");
    struct stat st {};
    ::fstat(fd.get(), &st);
    auto* header = new (mapping.get()) SegmentHeader{kSegmentMagic, size, {kFirstOffset}};
    static_cast<void>(header);
    std::shared_ptr<Segment> segment(new Segment(std::move(fd), std::move(mapping), st.st_dev, st.st_ino));
    SegmentTable& table = SegmentTable::get();
    std::lock_guard lock(table.mutex);
    table.mapped[{st.st_dev, st.st_ino}] = segment;
    return segment;
}

std::shared_ptr<Segment> Segment::import(UniqueFd fd) {
    if (!fd) decode_error("no descriptor");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) decode_error("cannot inspect a received descriptor");
    SegmentTable& table = SegmentTable::get();
    {
        std::lock_guard lock(table.mutex);
        auto it = table.mapped.find({st.st_dev, st.st_ino});
        if (it != table.mapped.end()) {
            if (auto existing = it->second.lock()) return existing;  // `fd` closes: one mapping is enough
        }
    }
    // Only a segment sealed against shrinking can be trusted not to vanish under this process.
    const int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) decode_error("a received descriptor is not a sealed mproc segment");
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size < kPageSize || size % kPageSize != 0) decode_error("a received segment has a bad size");
    MappedRegion mapping = MappedRegion::map_shared(fd.get(), size, "receiving shared memory (mmap)");
    const auto* header = static_cast<const SegmentHeader*>(mapping.get());
    if (header->magic != kSegmentMagic || header->size != size) decode_error("a received segment is not an mproc segment");
    std::shared_ptr<Segment> segment(new Segment(std::move(fd), std::move(mapping), st.st_dev, st.st_ino));
    std::lock_guard lock(table.mutex);
    auto& slot = table.mapped[{st.st_dev, st.st_ino}];
    if (auto raced = slot.lock()) return raced;  // another thread mapped it meanwhile
    slot = segment;
    return segment;
}

Segment::~Segment() {
    SegmentTable& table = SegmentTable::get();
    std::lock_guard lock(table.mutex);
    auto it = table.mapped.find({device_, inode_});
    if (it != table.mapped.end() && it->second.expired()) table.mapped.erase(it);
    // The mapping and the descriptor go with the members, after the table lets go of the entry.
}

std::byte* Segment::try_allocate(BlockKind kind, std::size_t size, std::size_t alignment) noexcept {
    alignment = std::max(alignment, kMinAlignment);
    SegmentHeader* h = header();
    // The cursor is in the segment, not in this process: after fork, parent and child may both
    // allocate from the arena they share, and must not hand out the same block.
    std::uint64_t cursor = h->cursor.load(std::memory_order_relaxed);
    for (;;) {
        const std::uint64_t payload = round_up(cursor + sizeof(BlockHeader), alignment);
        const std::uint64_t end = payload + size;
        if (end > mapping_.size() || end < payload) return nullptr;
        if (h->cursor.compare_exchange_weak(cursor, round_up(end, kMinAlignment), std::memory_order_relaxed)) {
            auto* block = reinterpret_cast<BlockHeader*>(base_ + payload - sizeof(BlockHeader));
            block->kind = static_cast<std::uint32_t>(kind);
            block->size = size;
            // Written last: a block with its magic is complete (for import's check).
            std::atomic_ref<std::uint32_t>(block->magic).store(kBlockMagic, std::memory_order_release);
            return base_ + payload;
        }
    }
}

SharedBlock allocate_shared_block(BlockKind kind, std::size_t size, std::size_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > kPageSize)
        throw UsageError("shared memory: alignment must be a power of two up to " + std::to_string(kPageSize));
    if (size > (std::size_t{1} << 46)) throw OSError("allocating " + std::to_string(size) + " bytes of shared memory", ENOMEM);
    const std::size_t footprint = sizeof(BlockHeader) + std::max(alignment, kMinAlignment) + size;
    if (footprint > kLargeBlock) {
        auto segment = Segment::create(round_up(kFirstOffset + footprint, kPageSize));
        std::byte* payload = segment->try_allocate(kind, size, alignment);
        return SharedBlock(std::move(segment), payload);
    }
    SegmentTable& table = SegmentTable::get();
    // Declared before the lock, so destroyed after it is released: dropping what may be the last
    // reference to a segment runs its destructor, which takes the table's mutex.
    std::shared_ptr<Segment> arena;
    {
        std::lock_guard lock(table.mutex);
        arena = table.current_arena.lock();
        if (arena) {
            if (std::byte* payload = arena->try_allocate(kind, size, alignment)) return SharedBlock(arena, payload);
        }
    }
    // A new arena; the full one stays alive as long as its blocks do.
    auto fresh = Segment::create(kArenaSize);
    std::byte* payload = fresh->try_allocate(kind, size, alignment);
    std::lock_guard lock(table.mutex);
    table.current_arena = fresh;
    return SharedBlock(std::move(fresh), payload);
}

int shared_block_descriptor(const SharedBlock& block) { return block.segment()->fd(); }

std::uint64_t shared_block_offset(const SharedBlock& block) {
    return static_cast<std::uint64_t>(block.payload() - block.segment()->base());
}

std::uint64_t shared_block_size(const SharedBlock& block) {
    return reinterpret_cast<const BlockHeader*>(block.payload() - sizeof(BlockHeader))->size;
}

SharedBlock import_shared_block(int fd, std::uint64_t offset, BlockKind kind, std::uint64_t size) {
    std::shared_ptr<Segment> segment = Segment::import(UniqueFd(fd));
    const std::uint64_t limit = segment->size();
    if (offset < kFirstOffset + sizeof(BlockHeader) || offset % kMinAlignment != 0 || offset > limit ||
        size > limit - offset)
        decode_error("a block lies outside its segment (offset " + std::to_string(offset) + ", size " +
                     std::to_string(size) + ", segment " + std::to_string(limit) + ")");
    std::byte* payload = segment->base() + offset;
    const auto* header = reinterpret_cast<const BlockHeader*>(payload - sizeof(BlockHeader));
    if (std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(header->magic)).load(std::memory_order_acquire) != kBlockMagic ||
        header->kind != static_cast<std::uint32_t>(kind) || header->size != size)
        decode_error("the block received is not the kind of object expected");
    return SharedBlock(std::move(segment), payload);
}

void throw_moved_from(const char* what) {
    throw UsageError(std::string(what) + " has no shared memory (it was moved from)");
}

}  // namespace mproc::detail
