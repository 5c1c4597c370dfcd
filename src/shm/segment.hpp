#pragma once
// Segments: anonymous memory files (memfd) mapped MAP_SHARED, sealed so that no process can
// shrink or grow them, carved into blocks by a bump allocator whose cursor lives in the segment
// itself. See include/mproc/detail/shared_block.hpp for how blocks are used and travel.
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "base/mapping.hpp"
#include "base/unique_fd.hpp"
#include "mproc/detail/shared_block.hpp"

namespace mproc::detail {

// The first bytes of every segment.
struct SegmentHeader {
    std::uint64_t magic;
    std::uint64_t size;                // of the whole segment
    std::atomic<std::uint64_t> cursor;  // next free offset; only grows
};

// The 16 bytes in front of every block's payload.
struct BlockHeader {
    std::uint32_t magic;
    std::uint32_t kind;
    std::uint64_t size;
};

inline constexpr std::uint64_t kSegmentMagic = 0x6d70726f632d7367ULL;  // "mproc-sg"
inline constexpr std::uint32_t kBlockMagic = 0x6d70626bU;             // "mpbk"

class Segment {
public:
    // A new sealed memfd of `size` bytes (a multiple of the page size), its memory reserved up
    // front so that touching it can never raise SIGBUS. OSError on failure.
    static std::shared_ptr<Segment> create(std::size_t size);
    // Maps the segment behind `fd` (closed on failure, and when the segment is already mapped).
    // DecodeError unless it is a sealed mproc segment.
    static std::shared_ptr<Segment> import(UniqueFd fd);

    Segment(const Segment&) = delete;
    Segment& operator=(const Segment&) = delete;
    ~Segment();

    int fd() const noexcept { return fd_.get(); }
    std::byte* base() const noexcept { return base_; }
    std::size_t size() const noexcept { return mapping_.size(); }

    // Carves a block out of this segment; nullopt when it does not fit. The payload is
    // zero-filled (a fresh memfd is, and blocks are never reused).
    std::byte* try_allocate(BlockKind kind, std::size_t size, std::size_t alignment) noexcept;

private:
    Segment(UniqueFd fd, MappedRegion mapping, dev_t device, ino_t inode) noexcept
        : fd_(std::move(fd)), mapping_(std::move(mapping)), base_(mapping_.bytes()), device_(device), inode_(inode) {}
    SegmentHeader* header() const noexcept { return reinterpret_cast<SegmentHeader*>(base_); }

    friend struct SegmentTable;
    UniqueFd fd_;
    MappedRegion mapping_;
    std::byte* base_;  // mapping_.bytes(), kept beside it for the hot paths
    dev_t device_;
    ino_t inode_;
};

}  // namespace mproc::detail
