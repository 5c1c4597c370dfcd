#pragma once
// MappedRegion: the one owner of an mmap(2)ed range inside mproc; the destructor unmaps it, so no
// floor calls munmap(2) itself. (Blocks carved out of shared segments are the shm floor's; a segment
// owns its mapping through a MappedRegion.)
#include <sys/types.h>

#include <cstddef>
#include <utility>

namespace mproc::detail {

class MappedRegion {
public:
    MappedRegion() noexcept = default;
    // Adopts a range that mmap returned.
    MappedRegion(void* address, std::size_t size) noexcept : address_(address), size_(size) {}
    MappedRegion(MappedRegion&& other) noexcept
        : address_(std::exchange(other.address_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    MappedRegion& operator=(MappedRegion&& other) noexcept {
        if (this != &other) {
            reset();
            address_ = std::exchange(other.address_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }
    MappedRegion(const MappedRegion&) = delete;
    MappedRegion& operator=(const MappedRegion&) = delete;
    ~MappedRegion() { reset(); }

    // mmap(2) of `size` bytes; OSError "<what>: <strerror>" when it fails.
    static MappedRegion map(std::size_t size, int protection, int flags, int fd, off_t offset, const char* what);
    // A shared mapping of the whole of `fd` (read and write), `size` bytes long.
    static MappedRegion map_shared(int fd, std::size_t size, const char* what);

    void* get() const noexcept { return address_; }
    std::byte* bytes() const noexcept { return static_cast<std::byte*>(address_); }
    std::size_t size() const noexcept { return size_; }
    explicit operator bool() const noexcept { return address_ != nullptr; }

    // Gives up ownership: the caller unmaps the range.
    [[nodiscard]] std::pair<void*, std::size_t> release() noexcept {
        return {std::exchange(address_, nullptr), std::exchange(size_, 0)};
    }
    void reset() noexcept;

private:
    void* address_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace mproc::detail
